from dataclasses import replace

import numpy as np
import pytest

from models.baseline import NgramBaseline
from models.datasets import Example, label_matrix
from models.errors import DataError, ModelError
from models.generate import generate_splits
from models.scoring import score
from models.taxonomy import load_taxonomy

NAMES = load_taxonomy("eurochef").names


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Example]]:
    return generate_splits(2000, seed=3)  # version 2 implies most labels: a few hundred tickets teach too little


@pytest.fixture(scope="module")
def fitted(splits: dict[str, list[Example]]) -> NgramBaseline:
    return NgramBaseline().fit(splits["train"], splits["validation"], NAMES)


def test_fits_quickly_and_beats_trivial_baselines(fitted: NgramBaseline, splits: dict[str, list[Example]]) -> None:
    assert fitted.fit_seconds < 10  # under a second on one core; slack for a busy machine
    test = splits["test"]
    y = label_matrix(test, NAMES)
    f1 = fitted.evaluate(test).f1_micro
    zeros = score(y, np.zeros_like(y), NAMES).f1_micro
    ones = score(y, np.ones_like(y), NAMES).f1_micro
    # the best constant guess: every label at least as frequent in train as the most frequent label's half
    prevalence = label_matrix(splits["train"], NAMES).mean(axis=0)
    frequent = np.tile(prevalence >= prevalence.max() / 2, (len(y), 1))
    prior = score(y, frequent, NAMES).f1_micro
    assert zeros == 0.0
    assert f1 > max(ones, prior) + 0.2, (f1, ones, prior)
    assert f1 > 0.6


def test_predict_shape_and_order(fitted: NgramBaseline, splits: dict[str, list[Example]]) -> None:
    texts = [ex.text for ex in splits["test"][:12]]
    probs = fitted.predict_proba(texts)
    preds = fitted.predict(texts)
    assert fitted.labels == NAMES and len(fitted.thresholds) == len(NAMES)
    assert probs.shape == preds.shape == (12, len(NAMES))
    assert ((probs >= 0) & (probs <= 1)).all()
    assert set(np.unique(preds)) <= {0, 1}
    assert np.array_equal(preds, (probs >= np.asarray(fitted.thresholds)).astype(int))
    # rows follow the input order, columns follow ``labels``
    assert np.allclose(fitted.predict_proba(texts[::-1]), probs[::-1])
    reordered = NgramBaseline().fit(splits["train"], splits["validation"], NAMES[::-1])
    assert np.allclose(reordered.predict_proba(texts), probs[:, ::-1], atol=1e-6)
    assert fitted.predict_proba([]).shape == (0, len(NAMES))


def test_a_label_absent_from_train_gives_zeros(splits: dict[str, list[Example]]) -> None:
    train = [replace(ex, labels=tuple(x for x in ex.labels if x != "enterprise")) for ex in splits["train"]]
    labels = [*NAMES, "never_seen"]
    model = NgramBaseline().fit(train, splits["validation"], labels)
    texts = [ex.text for ex in splits["test"]]
    probs, preds = model.predict_proba(texts), model.predict(texts)
    assert probs.shape == (len(texts), len(labels))
    for name in ("enterprise", "never_seen"):
        column = labels.index(name)
        assert (probs[:, column] == 0).all() and (preds[:, column] == 0).all()
    assert preds.sum() > 0


def test_a_single_label_works(splits: dict[str, list[Example]]) -> None:
    model = NgramBaseline().fit(splits["train"], splits["validation"], ["billing"])
    assert model.predict_proba([ex.text for ex in splits["test"]]).shape == (len(splits["test"]), 1)
    assert model.evaluate(splits["test"]).f1_micro > 0.7


def test_errors_say_what_was_found_and_how_to_fix(splits: dict[str, list[Example]]) -> None:
    with pytest.raises(ModelError, match=r"not fitted; call fit\(train, validation, labels\) first"):
        NgramBaseline().predict(["hello"])
    with pytest.raises(ValueError, match=r"invalid baseline argument.*C=0"):
        NgramBaseline(C=0)
    with pytest.raises(DataError, match=r"distinct names, found \['a', 'a'\]"):
        NgramBaseline().fit(splits["train"], splits["validation"], ["a", "a"])
    with pytest.raises(DataError, match="train has 1 example"):
        NgramBaseline().fit(splits["train"][:1], splits["validation"], NAMES)
    with pytest.raises(DataError, match="validation is empty"):
        NgramBaseline().fit(splits["train"], [], NAMES)


def test_a_single_string_is_rejected(fitted: NgramBaseline) -> None:
    with pytest.raises(TypeError, match="found a single string; wrap it in a list"):
        fitted.predict_proba("my payment failed")
