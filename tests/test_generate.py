"""Tests for the synthetic EuroChef+ ticket generator and its phrase files."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from models.datasets import load_dataset
from models.errors import DataError
from models.generate import (
    GENERATOR_VERSION,
    LABEL_NOISE_P,
    LABELS,
    LANGUAGE_SCHEMA,
    LANGUAGE_WEIGHTS,
    MIN_REALISATIONS,
    SCENES_FILE,
    SCENES_SCHEMA,
    SHARED_FILE,
    SHARED_SCHEMA,
    TOPICS,
    USER_TYPES,
    _families,
    _fill,
    _pool,
    _template_ids,
    generate_splits,
    load_phrases,
    phrase_book,
    write_generated_dataset,
)
from models.taxonomy import Taxonomy, load_taxonomy

TAXONOMY = load_taxonomy("eurochef")
PHRASE_DIR = resources.files("models.phrases")
PHRASE_FILES = sorted(
    [
        SHARED_FILE,
        *(f"{lang}.json" for lang in LANGUAGE_WEIGHTS),
        *(SCENES_FILE.format(lang=x) for x in LANGUAGE_WEIGHTS),
    ]
)


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
        assert labels & set(TOPICS) or labels <= {"satisfied", *USER_TYPES}, ex  # no topic: praise only
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


def test_heldout_families_are_whole_situations_never_seen_in_train(splits) -> None:
    def families(split: str) -> set[str]:
        return {tid.rsplit(":", 1)[0] for ex in splits[split] for tid in _template_ids(ex) if tid.count(":") == 3}

    train, heldout = families("train"), families("test_heldout")
    assert len(heldout) > 60 and not train & heldout
    for lang, phrases in phrase_book().items():
        for label in LABELS:
            seen, held = _families(phrases, label, False), _families(phrases, label, True)
            assert held and len(seen) >= 2 * len(held), (lang, label)
            assert {name for name, _ in seen}.isdisjoint(name for name, _ in held)


def test_scenario_families_carry_most_labels(splits) -> None:
    ids = [tid for ex in splits["train"] for tid in _template_ids(ex)]
    share = sum(tid.count(":") == 3 for tid in ids) / len(ids)
    assert 0.6 < share < 0.8, share  # EXPLICIT_P = 0.3 of the fragments are explicit cues


def test_praise_only_tickets_and_a_little_label_noise_in_train_only(splits) -> None:
    praise = [ex for ex in _all(splits) if not set(ex.labels) & set(TOPICS)]
    assert praise and all("satisfied" in ex.labels for ex in praise)
    noisy = [ex for ex in splits["train"] if "noise" in ex.meta]
    assert 0.3 * LABEL_NOISE_P < len(noisy) / len(splits["train"]) < 3 * LABEL_NOISE_P
    for ex in noisy:  # the dropped label's fragment is still in the text: a template id names it
        dropped = ex.meta["noise"].removeprefix("dropped ")
        assert dropped not in ex.labels and dropped in {tid.split(":")[1] for tid in _template_ids(ex)} | {"frustrated"}
    assert not any("noise" in ex.meta for name in ("validation", "test", "test_heldout") for ex in splits[name])


def test_pools_are_large_and_split() -> None:
    for lang, phrases in phrase_book().items():
        assert set(phrases.cues) == set(TAXONOMY.names), lang
        for label, templates in phrases.cues.items():
            assert len(templates) >= (12 if label in TOPICS else 8), (lang, label)
            assert len(set(templates)) == len(templates), (lang, label)
            seen, held = _pool(phrases, label, False), _pool(phrases, label, True)
            assert held and len(seen) > len(held)
            assert {t for _, t in seen}.isdisjoint(t for _, t in held)


def test_every_template_fills() -> None:
    rng = random.Random(0)
    for lang, phrases in phrase_book().items():
        families = [pool for label in LABELS for _, pool in phrases.families[label]]
        for templates in [*phrases.cues.values(), phrases.fillers, *families, phrases.distractors, phrases.context]:
            for template in templates:
                text = _fill(template, phrases, rng)
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


def _digest(splits: dict) -> str:
    digest = hashlib.sha256()
    for name, examples in splits.items():
        for ex in examples:
            row = [name, ex.id, ex.text, list(ex.labels), ex.language]
            digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def test_output_for_a_seed_is_pinned() -> None:
    # Generator version 2 (scenario families, distractors, praise-only tickets, label noise).
    pinned = "fb19e230552e086cb21b2db5424083b30ea674c6587710ba0d66a62992db9308"
    assert _digest(generate_splits(300, seed=5)) == pinned, (
        "seed 5 no longer gives the same tickets: if the phrase files or the generator changed on purpose, "
        "bump GENERATOR_VERSION and update this digest"
    )


# ---------------------------------------------------------------------------------------------------------------
# Phrase files: every bundled file loads against the schema; a broken one is named with its key.
# ---------------------------------------------------------------------------------------------------------------


def test_every_phrase_file_loads_against_the_schema() -> None:
    assert sorted(f.name for f in PHRASE_DIR.iterdir() if f.name.endswith(".json")) == PHRASE_FILES
    shared = json.loads(PHRASE_DIR.joinpath(SHARED_FILE).read_text(encoding="utf-8"))
    assert list(shared) == list(SHARED_SCHEMA)
    book = load_phrases()
    assert list(book) == list(LANGUAGE_WEIGHTS)
    for lang, phrases in book.items():
        data = json.loads(PHRASE_DIR.joinpath(f"{lang}.json").read_text(encoding="utf-8"))
        assert list(data) == list(LANGUAGE_SCHEMA), lang
        assert phrases.language == lang
        assert list(phrases.cues) == list(LABELS) and set(LABELS) <= set(TAXONOMY.names)
        assert phrases.cues == {label: tuple(pool) for label, pool in data["cues"].items()}
        assert set(shared["vocab"]) | set(data["vocab"]) == set(phrases.vocab)
        assert len(phrases.months) == 12
        scenes = json.loads(PHRASE_DIR.joinpath(SCENES_FILE.format(lang=lang)).read_text(encoding="utf-8"))
        assert list(scenes) == list(SCENES_SCHEMA), lang
        assert {label: dict(fams) for label, fams in phrases.families.items()} == {
            label: {name: tuple(pool) for name, pool in fams.items()} for label, fams in scenes["families"].items()
        }
        assert all(len(pool) >= MIN_REALISATIONS for fams in phrases.families.values() for _, pool in fams)


def test_phrase_files_keep_their_diffable_layout() -> None:
    for name in PHRASE_FILES:
        text = PHRASE_DIR.joinpath(name).read_text(encoding="utf-8")
        canonical = json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
        assert text == canonical, f"{name}: rewrite it with json.dumps(data, indent=2, ensure_ascii=False)"


def test_phrase_book_is_read_on_first_use_not_at_import() -> None:
    script = """
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
import models.generate as generate
at_import = [p for p in opened if p.endswith(".json") and "phrases" in p]
generate.generate_splits(20, seed=0)
generate.generate_splits(20, seed=1)
print(len(at_import), sorted(p.rsplit("/", 1)[-1] for p in opened if p.endswith(".json") and "phrases" in p))
"""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.split(" ", 1) == ["0", f"{PHRASE_FILES}\n"]
    assert phrase_book() is phrase_book()


def _copy_phrases(tmp_path: Path) -> Path:
    for name in PHRASE_FILES:
        (tmp_path / name).write_text(PHRASE_DIR.joinpath(name).read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


def _edit(folder: Path, name: str, change: Callable[[dict[str, Any]], object]) -> None:
    path = folder / name
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


BROKEN: dict[str, tuple[str, Callable[[dict[str, Any]], object], str]] = {
    "missing label": (
        "fr.json",
        lambda d: d["cues"].pop("billing"),
        r"fr\.json: cues: expected a pool for each of technical_issue, billing, .*; missing: billing$",
    ),
    "unknown slot": (
        "fr.json",
        lambda d: d["cues"]["billing"].__setitem__(0, "On m'a débité {montant} deux fois."),
        r"fr\.json: cues\.billing\[0\]: expected slots from amount, chef, .*; found unknown slot \{montant\} in "
        r"\"On m'a débité \{montant\} deux fois\.\"$",
    ),
    "slot of another language": (
        "de.json",
        lambda d: d["cues"]["content_request"].append("Mehr {cuisine} Rezepte bitte."),
        r"de\.json: cues\.content_request\[18\]: .*found unknown slot \{cuisine\}",
    ),
    "slot in a fillers template": (
        "nl.json",
        lambda d: d["fillers"].append("Mijn klantnummer is {klantnummer}."),
        r"nl\.json: fillers\[12\]: .*found unknown slot \{klantnummer\}",
    ),
    "too few templates": (
        "nl.json",
        lambda d: d["cues"].__setitem__("urgent", d["cues"]["urgent"][:3]),
        r"nl\.json: cues\.urgent: expected at least 8 entries, found 3$",
    ),
    "too few topic templates": (
        "en.json",
        lambda d: d["cues"].__setitem__("billing", d["cues"]["billing"][:11]),
        r"en\.json: cues\.billing: expected at least 12 entries, found 11$",
    ),
    "unknown label": (
        "en.json",
        lambda d: d["cues"].__setitem__("billling", ["charged twice"]),
        r"en\.json: cues: expected only the pools technical_issue, .*; unexpected: billling$",
    ),
    "duplicate template": (
        "en.json",
        lambda d: d["cues"]["urgent"].append(d["cues"]["urgent"][0]),
        r"en\.json: cues\.urgent: expected distinct templates, found 'Please fix this as soon as possible\.' more",
    ),
    "wrong type": (
        "de.json",
        lambda d: d.__setitem__("greetings", "Hallo,"),
        r"de\.json: greetings: expected a list of strings, found a string$",
    ),
    "empty string": (
        "de.json",
        lambda d: d["signoffs"].append(""),
        r"de\.json: signoffs\[8\]: expected a non-empty string, found a string ''$",
    ),
    "missing key": (
        "en.json",
        lambda d: d.pop("fillers"),
        r"en\.json: expected keys cues, fillers, .*; missing: fillers$",
    ),
    "misspelt key": (
        "en.json",
        lambda d: d.__setitem__("greeting", d.pop("greetings")),
        r"en\.json: expected keys .*; missing: greetings; unexpected: greeting$",
    ),
    "slot in plain text": (
        "en.json",
        lambda d: d["greetings"].append("Hi {name},"),
        r"en\.json: greetings\[10\]: expected plain text .*, found the slot \{name\} in 'Hi \{name\},'$",
    ),
    "eleven months": (
        "fr.json",
        lambda d: d["months"].pop(),
        r"fr\.json: months: expected exactly 12 entries, found 11$",
    ),
    "unknown date field": (
        "de.json",
        lambda d: d["date_formats"].__setitem__(0, "{tag}. {month_name}"),
        r"de\.json: date_formats\[0\]: expected fields from \{day\}, \{month\}, \{month_name\}; found \{tag\}",
    ),
    "money format without the amount": (
        "nl.json",
        lambda d: d["money_formats"].append("EUR"),
        r"nl\.json: money_formats\[4\]: expected a pattern that uses \{value\}, found 'EUR'$",
    ),
    "scenes without a label": (
        "scenes_nl.json",
        lambda d: d["families"].pop("urgent"),
        r"scenes_nl\.json: families: expected families for each of technical_issue, .*; missing: urgent$",
    ),
    "scenes with too few families": (
        "scenes_en.json",
        lambda d: d["families"].__setitem__("billing", dict(list(d["families"]["billing"].items())[:3])),
        r"scenes_en\.json: families\.billing: expected at least 8 entries, found 3$",
    ),
    "a family too small": (
        "scenes_de.json",
        lambda d: d["families"]["urgent"].__setitem__("tiny", ["Heute noch!"]),
        r"scenes_de\.json: families\.urgent\.tiny: expected at least 6 entries, found 1$",
    ),
    "a realisation in two families": (
        "scenes_fr.json",
        lambda d: d["families"]["confused"].__setitem__("copy", list(next(iter(d["families"]["satisfied"].values())))),
        r"scenes_fr\.json: families\.satisfied\.\w+: expected distinct realisations, found .* also in "
        r"families\.confused\.copy$",
    ),
    "unknown slot in a realisation": (
        "scenes_en.json",
        lambda d: d["families"]["billing"].__setitem__("x", [f"charged {{euros}} {i}" for i in range(6)]),
        r"scenes_en\.json: families\.billing\.x\[0\]: expected slots from .*; found unknown slot \{euros\}",
    ),
    "too few distractors": (
        "scenes_nl.json",
        lambda d: d.__setitem__("distractors", d["distractors"][:5]),
        r"scenes_nl\.json: distractors: expected at least 40 entries, found 5$",
    ),
    "shared vocab without usernames": (
        SHARED_FILE,
        lambda d: d["vocab"].pop("username"),
        r"shared\.json: vocab: expected a pool for each of username, domain; missing: username$",
    ),
    "vocab named like a generated slot": (
        SHARED_FILE,
        lambda d: d["vocab"].__setitem__("amount", ["a lot"]),
        r"shared\.json: vocab\.amount: expected a name other than the generated slots \(amount, .*\), found 'amount'$",
    ),
    "emoji for an unknown mood": (
        SHARED_FILE,
        lambda d: d["emoji"].__setitem__("happy", ["🙂"]),
        r"shared\.json: emoji: expected only the pools aggressive, .*, none; unexpected: happy$",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_phrase_file_names_file_key_and_expectation(tmp_path: Path, case: str) -> None:
    name, change, message = BROKEN[case]
    folder = _copy_phrases(tmp_path)
    _edit(folder, name, change)
    with pytest.raises(DataError, match=message):
        load_phrases(folder)


def test_phrase_file_that_is_not_json_or_missing_is_named(tmp_path: Path) -> None:
    folder = _copy_phrases(tmp_path)
    (folder / "fr.json").write_text('{"cues": {', encoding="utf-8")
    with pytest.raises(DataError, match=r"fr\.json: not valid UTF-8 JSON: Expecting .*line 1 column 11"):
        load_phrases(folder)
    (folder / "fr.json").unlink()
    with pytest.raises(
        DataError, match=r"fr\.json: file not found; the generator needs shared\.json and a <language>\.json"
    ):
        load_phrases(folder)


def test_copied_phrase_files_load_like_the_bundled_ones(tmp_path: Path) -> None:
    assert load_phrases(_copy_phrases(tmp_path)) == dict(phrase_book())
