"""How a DeBERTa-v2 sequence classifier pools its tokens, and the warm start that makes a from-scratch one learn.

The stock head (``cls``) reads the first token's last hidden state, so a model trained from scratch must first
learn attention that gathers the ticket into that token. Measured on the embedded default's budget, that is the
bottleneck: after 5 epochs the tiny encoder still scored 0.55 F1 on its own generated test split, while a bag of
the same BPE pieces (mean of token embeddings, then a linear layer) reached 0.81 in 20 seconds.

``mean`` pooling reads the masked mean of the last hidden states instead, through the same pooler dense layer,
activation and classifier. With every residual branch of the encoder set to zero (each layer then only
re-normalises its input), such a model computes exactly :meth:`MeanPooledDebertaV2ForSequenceClassification.
bag_logits`: a bag of normalised token embeddings. Training that cheap function first and then the whole model
from the same weights (``train_encoder``'s warm start) starts the transformer from a working classifier instead
of from noise.

The pooling is a config attribute (``pooling`` in config.json), so a checkpoint says how to load itself:
:func:`build_classifier` and :func:`load_classifier` pick the model class from it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DebertaV2ForSequenceClassification,
    PretrainedConfig,
)
from transformers.activations import ACT2FN
from transformers.modeling_outputs import SequenceClassifierOutput

from models.errors import CheckpointError

POOLINGS = ("cls", "mean")


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real (unpadded) tokens of (batch, tokens, hidden) states."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MeanPooledDebertaV2ForSequenceClassification(DebertaV2ForSequenceClassification):
    """DeBERTa-v2 whose classification head pools the mean of the last hidden states, not the first token.

    Same parameters (names and shapes) as the stock class: only ``forward`` differs, so the weights of one load
    into the other.
    """

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The pooler's dropout, dense layer and activation over the masked mean of ``hidden``."""
        pooled = self.pooler.dense(self.pooler.dropout(masked_mean(hidden, attention_mask)))
        return ACT2FN[self.config.pooler_hidden_act](pooled)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """Logits only: the loss is the trainer's (weighted BCE), so ``labels`` must not be given."""
        if labels is not None:
            raise ValueError("this head computes no loss; compute it from the logits")
        outputs = self.deberta(
            input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(self.pool(outputs.last_hidden_state, attention_mask)))
        return SequenceClassifierOutput(
            logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def bag_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What ``forward`` computes when every residual branch is zero: the head over the normalised embeddings.

        Runs no encoder layer, so it is the cheap model the warm start trains first.
        """
        embedded = self.deberta.embeddings(input_ids=input_ids, mask=attention_mask)
        return self.classifier(self.dropout(self.pool(embedded, attention_mask)))

    def zero_residual_branches(self) -> None:
        """Set every layer's attention-output and feed-forward-output projection to zero.

        Each post-LayerNorm layer then maps ``x`` to ``LayerNorm(LayerNorm(x))``, which is ``x`` again for the
        normalised embeddings it starts from: the model computes :meth:`bag_logits` until training moves them.
        """
        with torch.no_grad():
            layers: Any = self.deberta.encoder.layer
            for layer in layers:
                for projection in (layer.attention.output.dense, layer.output.dense):
                    projection.weight.zero_()
                    projection.bias.zero_()


def warm_start_parameters(model: MeanPooledDebertaV2ForSequenceClassification) -> list[nn.Parameter]:
    """The parameters :meth:`~MeanPooledDebertaV2ForSequenceClassification.bag_logits` uses."""
    modules: list[nn.Module] = [model.deberta.embeddings, model.pooler, model.classifier]
    return [p for module in modules for p in module.parameters()]


CLASSIFIER_CLASSES: dict[tuple[str, str], Any] = {
    ("deberta-v2", "mean"): MeanPooledDebertaV2ForSequenceClassification,
}
"""(model_type, pooling) -> the class; ``cls`` pooling is the architecture's own (transformers' Auto class)."""


def pooling_of(config: PretrainedConfig) -> str:
    """The checkpoint's pooling: ``cls`` unless its config.json says otherwise."""
    return str(getattr(config, "pooling", "cls"))


def _classifier_class(config: PretrainedConfig) -> Any:
    """The class that builds or loads a sequence classifier with ``config``'s pooling."""
    pooling = pooling_of(config)
    if pooling not in POOLINGS:
        raise CheckpointError(f"unknown pooling {pooling!r} in the model config; expected one of {', '.join(POOLINGS)}")
    if pooling == "cls":
        return AutoModelForSequenceClassification
    try:
        return CLASSIFIER_CLASSES[(config.model_type, pooling)]
    except KeyError:
        supported = ", ".join(sorted(model_type for model_type, _ in CLASSIFIER_CLASSES))
        raise CheckpointError(
            f"{pooling} pooling is implemented for {supported} models, not {config.model_type!r}"
        ) from None


def build_classifier(config: PretrainedConfig) -> Any:
    """A randomly initialised sequence classifier for ``config`` (its ``pooling`` included)."""
    cls = _classifier_class(config)
    return cls.from_config(config) if cls is AutoModelForSequenceClassification else cls(config)


def load_classifier(path: str, config: PretrainedConfig | None = None, **kwargs: Any) -> Any:
    """A sequence classifier from a checkpoint folder or hub id, with the pooling its config (or ``config``) names.

    ``kwargs`` go to ``from_pretrained`` (``dtype``...). Raises what ``from_pretrained`` raises (OSError,
    ValueError) and CheckpointError for a pooling this code cannot build.
    """
    config = config if config is not None else AutoConfig.from_pretrained(path)
    return _classifier_class(config).from_pretrained(path, config=config, **kwargs)
