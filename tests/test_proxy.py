"""The proxy evaluation set (evalsets/proxy): files, splits, gold label rules, agreement code, datasheet numbers."""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from models.agreement import (
    PROXY_DIR,
    agreement,
    agreement_markdown,
    cohen_kappa,
    positive_agreement,
    proxy_agreement,
    read_annotations,
)
from models.datasets import Example, read_examples
from models.errors import DataError
from models.taxonomy import Taxonomy, load_taxonomy
from router.decision import LabelRules

LANGUAGES = ("en", "fr", "de", "nl")
SPLITS = ("validation", "test")


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy("eurochef")


@pytest.fixture(scope="module")
def splits(taxonomy: Taxonomy) -> dict[str, list[Example]]:
    return {name: read_examples(PROXY_DIR / f"{name}.jsonl", taxonomy) for name in SPLITS}


@pytest.fixture(scope="module")
def build() -> ModuleType:
    """evalsets/proxy/build.py, loaded by path (the evalsets folder is data, not a package)."""
    spec = importlib.util.spec_from_file_location("proxy_build", PROXY_DIR / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- files and splits


def test_every_file_loads_with_the_eurochef_taxonomy(splits: dict[str, list[Example]], taxonomy: Taxonomy) -> None:
    for name, examples in splits.items():
        assert len(examples) == 220, name
        assert all(ex.language in LANGUAGES and ex.text.strip() and ex.labels for ex in examples), name
    second = read_annotations(PROXY_DIR / "second_annotation.jsonl", taxonomy)
    assert len(second) == 120
    assert "EuroChef+" in (PROXY_DIR / "guidelines.md").read_text(encoding="utf-8")


def test_ids_are_unique_and_every_language_has_at_least_100(splits: dict[str, list[Example]]) -> None:
    everything = [ex for examples in splits.values() for ex in examples]
    ids = [ex.id for ex in everything]
    assert len(ids) == 440 and len(set(ids)) == 440
    per_language = Counter(ex.language for ex in everything)
    assert set(per_language) == set(LANGUAGES)
    assert all(n >= 100 for n in per_language.values()), per_language
    assert all(ex.id.startswith(f"proxy-{ex.language}-") for ex in everything)
    assert len({ex.text for ex in everything}) == 440, "two tickets share a text"


def test_split_halves_are_disjoint_and_balanced_per_language(splits: dict[str, list[Example]]) -> None:
    validation = {ex.id for ex in splits["validation"]}
    test = {ex.id for ex in splits["test"]}
    assert not validation & test
    for language in LANGUAGES:
        n_validation = sum(ex.language == language for ex in splits["validation"])
        n_test = sum(ex.language == language for ex in splits["test"])
        assert n_validation == n_test == 55, (language, n_validation, n_test)


def test_split_is_the_deterministic_hash_rule(splits: dict[str, list[Example]], build: ModuleType) -> None:
    languages = {ex.id: str(ex.language) for examples in splits.values() for ex in examples}
    expected = build.assign_splits(languages)
    assert {ex.id: name for name, examples in splits.items() for ex in examples} == expected
    # the rule depends on the ids only: shuffling the input order changes nothing
    assert build.assign_splits(dict(reversed(list(languages.items())))) == expected


def test_files_are_sorted_and_labels_in_taxonomy_order(splits: dict[str, list[Example]], taxonomy: Taxonomy) -> None:
    order = {name: k for k, name in enumerate(taxonomy.names)}
    second = read_annotations(PROXY_DIR / "second_annotation.jsonl", taxonomy)
    for labels in [ex.labels for examples in splits.values() for ex in examples] + list(second.values()):
        assert list(labels) == sorted(set(labels), key=order.__getitem__)
    for examples in splits.values():
        assert [ex.id for ex in examples] == sorted(ex.id for ex in examples)


def test_second_annotation_covers_30_gold_tickets_per_language(splits: dict[str, list[Example]]) -> None:
    rows = [json.loads(line) for line in (PROXY_DIR / "second_annotation.jsonl").read_text("utf-8").splitlines()]
    assert all(set(row) == {"id", "labels"} for row in rows)
    language = {ex.id: ex.language for examples in splits.values() for ex in examples}
    assert {row["id"] for row in rows} <= set(language)
    assert Counter(language[row["id"]] for row in rows) == dict.fromkeys(LANGUAGES, 30)


# ---- gold label rules


def test_the_taxonomy_has_the_rules_the_gold_must_obey(taxonomy: Taxonomy) -> None:
    assert set(taxonomy.groups["urgency"]) == {"urgent", "low_priority"}
    assert set(taxonomy.groups["user_type"]) == {"premium_user", "free_user", "enterprise"}
    assert {"urgency", "user_type"} <= set(taxonomy.exclusive_groups)
    assert "frustrated" in taxonomy.implies["aggressive"]


def test_every_gold_label_set_obeys_the_taxonomy_rules(splits: dict[str, list[Example]], taxonomy: Taxonomy) -> None:
    rules = LabelRules.build(taxonomy.names, taxonomy.groups, taxonomy.exclusive_groups, taxonomy.implies)
    for ex in (ex for examples in splits.values() for ex in examples):
        labels = set(ex.labels)
        assert len(labels) == len(ex.labels), ex.id
        assert len(labels & {"urgent", "low_priority"}) <= 1, ex.id
        assert len(labels & {"premium_user", "free_user", "enterprise"}) <= 1, ex.id
        assert "aggressive" not in labels or "frustrated" in labels, ex.id
        assert rules.violations(ex.labels) == [], ex.id


# ---- agreement functions


def test_kappa_and_positive_agreement_on_a_hand_computed_case() -> None:
    # 10 tickets: both 3, only A 1, only B 2, neither 4.
    a = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    b = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], dtype=bool)
    # p_o = 7/10; p_e = 0.4 * 0.5 + 0.6 * 0.5 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)
    assert positive_agreement(a, b) == pytest.approx(6 / 9)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(a, ~a) == pytest.approx(-2 * 0.4 * 0.6 / (1 - 2 * 0.4 * 0.6))
    # both annotators constant and equal: chance agreement is 1, kappa is undefined
    assert math.isnan(cohen_kappa(np.zeros(5, dtype=bool), np.zeros(5, dtype=bool)))
    assert math.isnan(positive_agreement(np.zeros(5, dtype=bool), np.zeros(5, dtype=bool)))


def test_agreement_table_on_a_toy_annotation() -> None:
    labels = ["x", "y", "z"]
    a = {"t1": ["x"], "t2": ["x", "y"], "t3": [], "t4": ["y"]}
    b = {"t1": ["x"], "t2": ["x"], "t3": ["z"], "t4": ["y"]}
    table = agreement(a, b, labels)
    assert table.n == 4
    x, y, z = table.per_label
    assert (x.count_a, x.count_b, x.both, x.kappa, x.positive_agreement) == (2, 2, 2, 1.0, 1.0)
    # y: A on t2, t4; B on t4: p_o = 3/4, p_e = 0.5 * 0.25 + 0.5 * 0.75 = 0.5, kappa = 0.5
    assert (y.count_a, y.count_b, y.both) == (2, 1, 1)
    assert y.kappa == pytest.approx(0.5)
    assert y.positive_agreement == pytest.approx(2 / 3)
    # z: only B, once: p_o = 3/4, p_e = 1 * 0.75 = 0.75, kappa = 0
    assert z.kappa == pytest.approx(0.0)
    assert z.positive_agreement == 0.0
    assert table.exact_match == pytest.approx(2 / 4)
    # tp = 3 (x t1, x t2, y t4), fp = 1 (z t3), fn = 1 (y t2)
    assert table.micro_f1 == pytest.approx(6 / 8)
    assert table.mean_kappa == pytest.approx(0.5)
    rendered = agreement_markdown(table)
    assert "| y | 2 | 1 | 1 | 0.500 | 0.667 |" in rendered
    assert "| 4 | 0.500 | 0.750 | 0.500 |" in rendered


def test_different_ids_are_an_error_that_names_them() -> None:
    a = {"t1": ["x"], "t2": ["x"], "t3": []}
    b = {"t1": ["x"], "t4": ["x"]}
    with pytest.raises(DataError, match=r"2 only in A: t2, t3; 1 only in B: t4"):
        agreement(a, b, ["x"])


def test_unknown_labels_are_an_error_that_names_them() -> None:
    with pytest.raises(DataError, match=r"annotation B uses label\(s\) outside the label list \(w on t1\)"):
        agreement({"t1": ["x"]}, {"t1": ["w"]}, ["x"])


def test_second_annotation_of_a_ticket_without_gold_is_named(tmp_path: Path) -> None:
    for name in ("validation.jsonl", "test.jsonl"):
        (tmp_path / name).write_text((PROXY_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    second = (PROXY_DIR / "second_annotation.jsonl").read_text(encoding="utf-8")
    second += json.dumps({"id": "proxy-xx-999", "labels": ["billing"]}) + "\n"
    (tmp_path / "second_annotation.jsonl").write_text(second, encoding="utf-8")
    with pytest.raises(DataError, match=r"1 only in B: proxy-xx-999"):
        proxy_agreement(tmp_path)


# ---- the datasheet cannot drift from the files


def test_datasheet_agreement_table_is_what_the_code_computes() -> None:
    datasheet = (PROXY_DIR / "DATASHEET.md").read_text(encoding="utf-8")
    table = proxy_agreement()
    assert table.n == 120
    assert agreement_markdown(table) in datasheet


def test_every_generated_datasheet_block_is_current(build: ModuleType) -> None:
    found = build.datasheet_blocks((PROXY_DIR / "DATASHEET.md").read_text(encoding="utf-8"))
    expected = build.generated_blocks(PROXY_DIR)
    assert set(found) == set(expected)
    for name, body in expected.items():
        assert found[name] == body, f"DATASHEET.md block {name} is stale: run `python evalsets/proxy/build.py`"
