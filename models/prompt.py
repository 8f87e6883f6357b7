"""The classification prompt shared by every LLM backend and by adapter training.

The answer format is the label names joined by ``", "`` (in taxonomy order), or ``none``. Changing the prompt
changes what an adapter was trained on: bump ``PROMPT_VERSION`` so adapters record which prompt they expect.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.taxonomy import Taxonomy

PROMPT_VERSION = "1"
SEPARATOR = ", "
NONE_ANSWER = "none"


def system_prompt(taxonomy: Taxonomy) -> str:
    lines = [
        "You tag customer-support tickets for EuroChef+, a European culinary streaming service.",
        "Tickets are in English, French, German or Dutch. Pick every label that applies, from this list only:",
    ]
    for group, names in taxonomy.groups.items():
        lines.append(f"[{group}]")
        for label in taxonomy.labels:
            if label.name in names:
                lines.append(f"- {label.name}: {label.description}")
    lines.append(f"Answer with the label names separated by '{SEPARATOR}', or '{NONE_ANSWER}' if none applies.")
    return "\n".join(lines)


def build_messages(text: str, taxonomy: Taxonomy) -> list[dict[str, str]]:
    """Chat messages for one ticket, for the base model's own chat template."""
    return [
        {"role": "system", "content": system_prompt(taxonomy)},
        {"role": "user", "content": f"Ticket:\n{text}"},
    ]


def format_answer(labels: Sequence[str], taxonomy: Taxonomy) -> str:
    """The training target: labels in taxonomy order, or ``none``."""
    ordered = [name for name in taxonomy.names if name in set(labels)]
    return SEPARATOR.join(ordered) if ordered else NONE_ANSWER


def parse_answer(answer: str, taxonomy: Taxonomy) -> list[str]:
    """Labels named in an answer, in taxonomy order; anything not in the taxonomy is ignored."""
    found = {part.strip() for part in answer.replace("\n", ",").split(",")}
    return [name for name in taxonomy.names if name in found]
