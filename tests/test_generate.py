"""Tests for the synthetic EuroChef+ ticket generator."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from models.datasets import load_dataset
from models.errors import DataError
from models.generate import (
    CUE_TEMPLATES,
    FILLERS,
    GENERATOR_VERSION,
    LANGUAGE_WEIGHTS,
    TOPICS,
    _fill,
    _pool,
    _template_ids,
    generate_splits,
    write_generated_dataset,
)
from models.taxonomy import Taxonomy, load_taxonomy

TAXONOMY = load_taxonomy("eurochef")


@pytest.fixture(scope="module")
def splits() -> dict:
    return generate_splits(2000, seed=13)


@pytest.fixture(scope="module")
def train_counts(splits) -> Counter:
    return Counter(label for ex in splits["train"] for label in ex.labels)


def _all(splits) -> list:
    return [ex for examples in splits.values() for ex in examples]


def test_same_seed_gives_identical_splits() -> None:
    a, b = generate_splits(300, seed=5), generate_splits(300, seed=5)
    for name in a:
        assert [(e.id, e.text, e.labels, e.language) for e in a[name]] == [
            (e.id, e.text, e.labels, e.language) for e in b[name]
        ]


def test_different_seed_gives_different_tickets() -> None:
    a, b = generate_splits(300, seed=5), generate_splits(300, seed=6)
    texts_a = [e.text for e in a["train"]]
    texts_b = [e.text for e in b["train"]]
    assert sum(x != y for x, y in zip(texts_a, texts_b, strict=True)) > 0.9 * len(texts_a)


def test_split_sizes_and_ids() -> None:
    out = generate_splits(1001, seed=1)
    assert {k: len(v) for k, v in out.items()} == {"train": 701, "validation": 150, "test": 150, "test_heldout": 150}
    seen_ids = [e.id for name in ("train", "validation", "test") for e in out[name]]
    assert seen_ids == [f"eurochef-{i:06d}" for i in range(1001)]
    assert [e.id for e in out["test_heldout"]] == [f"eurochef-h-{i:06d}" for i in range(150)]


def test_too_small_n_is_rejected() -> None:
    with pytest.raises(DataError, match="at least 10"):
        generate_splits(3, seed=0)


def test_taxonomy_without_generator_labels_is_rejected() -> None:
    with pytest.raises(DataError, match="lacks label"):
        generate_splits(100, seed=0, taxonomy=Taxonomy.from_labels(["billing", "urgent"]))


def test_labels_are_known_ordered_and_consistent(splits) -> None:
    order = TAXONOMY.names
    for ex in _all(splits):
        assert ex.labels, ex
        assert set(ex.labels) <= set(order)
        assert list(ex.labels) == sorted(ex.labels, key=order.index)
        assert len(set(ex.labels)) == len(ex.labels)
        labels = set(ex.labels)
        assert labels & set(TOPICS), ex
        assert "aggressive" not in labels or "frustrated" in labels
        assert not {"urgent", "low_priority"} <= labels
        assert not {"aggressive", "satisfied"} <= labels
        assert len(labels & {"premium_user", "free_user", "enterprise"}) <= 1
        assert len(labels & {"frustrated", "aggressive", "confused", "satisfied"}) <= 2


def test_every_label_appears_in_train(train_counts) -> None:
    for label in TAXONOMY.names:
        assert train_counts[label] >= 20, (label, train_counts[label])


def test_rare_labels_stay_rare(train_counts, splits) -> None:
    n = len(splits["train"])
    for rare in ("aggressive", "enterprise"):
        for common in ("technical_issue", "frustrated"):
            assert train_counts[rare] * 3 < train_counts[common], (rare, common, train_counts)
    assert train_counts["aggressive"] < 0.08 * n
    assert train_counts["enterprise"] < 0.12 * n
    assert 0.12 < train_counts["urgent"] / n < 0.30
    assert 0.12 < train_counts["low_priority"] / n < 0.30


def test_tickets_without_optional_labels_exist(splits) -> None:
    optional = {
        "urgent",
        "low_priority",
        "premium_user",
        "free_user",
        "enterprise",
        "frustrated",
        "aggressive",
        "confused",
        "satisfied",
    }
    bare = [ex for ex in splits["train"] if not set(ex.labels) & optional]
    assert len(bare) > 0.03 * len(splits["train"])


def test_languages_present_with_english_most_common(splits) -> None:
    counts = Counter(ex.language for ex in _all(splits))
    assert set(counts) == set(LANGUAGE_WEIGHTS) == {"en", "fr", "de", "nl"}
    assert counts.most_common(1)[0][0] == "en"


def test_texts_are_varied(splits) -> None:
    texts = [ex.text for ex in splits["train"]]
    assert len(set(texts)) > 0.97 * len(texts)
    lengths = sorted(len(t) for t in texts)
    assert lengths[len(lengths) // 10] < 100 < lengths[-len(lengths) // 10]


def test_heldout_uses_no_template_seen_in_train(splits) -> None:
    train_ids = {tid for ex in splits["train"] for tid in _template_ids(ex)}
    heldout_ids = {tid for ex in splits["test_heldout"] for tid in _template_ids(ex)}
    assert train_ids and heldout_ids
    assert not train_ids & heldout_ids
    topic_ids = {tid for tid in heldout_ids if tid.split(":")[1] in TOPICS}
    assert len(topic_ids) > 30
    # Every held-out example has one template id per cue label it carries (frustrated may ride on aggressive).
    for ex in splits["test_heldout"]:
        cue_labels = {tid.split(":")[1] for tid in _template_ids(ex)}
        assert cue_labels == set(ex.labels) or cue_labels == set(ex.labels) - {"frustrated"}


def test_pools_are_large_and_split(splits) -> None:
    for lang, pools in CUE_TEMPLATES.items():
        assert set(pools) == set(TAXONOMY.names), lang
        for label, templates in pools.items():
            assert len(templates) >= (12 if label in TOPICS else 8), (lang, label)
            assert len(set(templates)) == len(templates), (lang, label)
            seen, held = _pool(lang, label, False), _pool(lang, label, True)
            assert held and len(seen) > len(held)
            assert {t for _, t in seen}.isdisjoint(t for _, t in held)


def test_every_template_fills() -> None:
    rng = random.Random(0)
    for lang, pools in CUE_TEMPLATES.items():
        for templates in [*pools.values(), FILLERS[lang]]:
            for template in templates:
                text = _fill(template, lang, rng)
                assert "{" not in text and "}" not in text, (lang, template)


def test_write_generated_dataset_round_trips(tmp_path) -> None:
    counts = write_generated_dataset(tmp_path / "a", n=200, seed=3, progress=False)
    assert counts == {"train": 140, "validation": 30, "test": 30, "test_heldout": 30}
    root = tmp_path / "a"
    for name in ("train", "validation", "test", "test_heldout", "taxonomy", "dataset"):
        assert (root / f"{name}.{'json' if name in ('taxonomy', 'dataset') else 'jsonl'}").exists()
    first = json.loads((root / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(first) == {"id", "text", "labels", "language"}
    dataset = load_dataset(root)
    assert dataset.taxonomy.names == TAXONOMY.names
    assert {k: len(v) for k, v in dataset.splits.items()} == counts
    info = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    assert info["seed"] == 3 and info["n"] == 200 and info["generator_version"] == GENERATOR_VERSION
    assert info["splits"] == counts
    assert sum(info["languages"]["train"].values()) == 140
    assert info["label_counts"]["train"]["technical_issue"] == sum(
        "technical_issue" in ex.labels for ex in dataset.split("train")
    )
    write_generated_dataset(tmp_path / "b", n=200, seed=3, progress=False)
    for file in sorted(root.iterdir()):
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes(), file.name


def test_generates_4000_tickets() -> None:
    out = generate_splits(4000, seed=0)
    assert sum(len(v) for v in out.values()) == 4600
