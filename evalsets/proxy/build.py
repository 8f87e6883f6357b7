"""Build the proxy evaluation set and refresh the numbers in its DATASHEET.md.

    python evalsets/proxy/build.py --source DIR   # splits, second annotation, guidelines, then the datasheet
    python evalsets/proxy/build.py                # the datasheet's generated blocks only, from the files here

``DIR`` holds the writers' tickets (``all.jsonl``: id, language, text), annotator A's labels for every ticket
(``labels_a*.jsonl``: id, labels), annotator B's labels for a subset (``labels_b.jsonl``) and ``guidelines.md``.
Every number in DATASHEET.md sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` and is
rewritten here from the committed files; tests/test_proxy.py fails when the datasheet and the files disagree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from models.agreement import PROXY_SECOND_ANNOTATION, agreement_markdown, proxy_agreement, read_annotations
from models.datasets import Example, read_examples, write_jsonl
from models.errors import DataError
from models.taxonomy import Taxonomy, load_taxonomy
from router.decision import LabelRules

HERE = Path(__file__).resolve().parent

SPLITS = ("validation", "test")
LANGUAGES = ("en", "fr", "de", "nl")
DATASHEET = "DATASHEET.md"
_BLOCK = re.compile(r"(<!-- generated:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /generated:(?P=name) -->)", re.S)


def split_key(ticket_id: str) -> str:
    """The stable hash that orders tickets before splitting: sha256 of the id, so adding tickets moves none."""
    return hashlib.sha256(ticket_id.encode("utf-8")).hexdigest()


def assign_splits(languages: Mapping[str, str]) -> dict[str, str]:
    """Ticket id -> ``validation`` or ``test``: per language, ids ordered by :func:`split_key`, first half validation.

    ``languages`` maps each id to its language; an odd count gives the extra ticket to test.
    """
    by_language: dict[str, list[str]] = {}
    for ticket_id, language in sorted(languages.items()):
        by_language.setdefault(language, []).append(ticket_id)
    out: dict[str, str] = {}
    for ids in by_language.values():
        ordered = sorted(ids, key=lambda i: (split_key(i), i))
        half = len(ordered) // 2
        out.update({i: "validation" for i in ordered[:half]})
        out.update({i: "test" for i in ordered[half:]})
    return out


def in_taxonomy_order(labels: Sequence[str], taxonomy: Taxonomy) -> tuple[str, ...]:
    """Labels deduplicated and sorted in the taxonomy's output order (unknown names raise DataError)."""
    order = {name: k for k, name in enumerate(taxonomy.names)}
    unknown = [x for x in labels if x not in order]
    if unknown:
        raise DataError(f"unknown label(s) {', '.join(unknown)}; the taxonomy has {', '.join(taxonomy.names)}")
    return tuple(sorted(set(labels), key=order.__getitem__))


def rules_of(taxonomy: Taxonomy) -> LabelRules:
    return LabelRules.build(taxonomy.names, taxonomy.groups, taxonomy.exclusive_groups, taxonomy.implies)


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    rows = []
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise DataError(f"{path}:{index}: expected a JSON object")
            rows.append(row)
    return rows


def _labels_by_id(paths: Sequence[Path], taxonomy: Taxonomy) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for path in paths:
        for ticket_id, labels in read_annotations(path, taxonomy).items():
            if ticket_id in out:
                raise DataError(f"{path}: id {ticket_id!r} is labelled in more than one file")
            out[ticket_id] = in_taxonomy_order(labels, taxonomy)
    return out


def build_from_source(source: Path, out: Path = HERE, taxonomy: Taxonomy | None = None) -> None:
    """Write validation.jsonl, test.jsonl, second_annotation.jsonl and guidelines.md into ``out`` from ``source``."""
    taxonomy = taxonomy or load_taxonomy("eurochef")
    tickets = _read_jsonl(source / "all.jsonl")
    ids = [str(row["id"]) for row in tickets]
    if len(set(ids)) != len(ids):
        raise DataError(f"{source}/all.jsonl: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    gold = _labels_by_id(sorted(source.glob("labels_a*.jsonl")), taxonomy)
    second = _labels_by_id([source / "labels_b.jsonl"], taxonomy)
    if set(gold) != set(ids):
        raise DataError(
            f"annotator A's labels and the tickets differ: unlabelled {sorted(set(ids) - set(gold))}, "
            f"unknown {sorted(set(gold) - set(ids))}"
        )
    if set(second) - set(ids):
        raise DataError(f"annotator B labelled unknown tickets {sorted(set(second) - set(ids))}")
    rules = rules_of(taxonomy)
    broken = {i: v for i, labels in gold.items() if (v := rules.violations(labels))}
    if broken:
        raise DataError(f"gold label sets break the taxonomy rules: {broken}")
    split = assign_splits({str(row["id"]): str(row["language"]) for row in tickets})
    examples = {
        name: [
            Example(
                id=str(row["id"]), text=str(row["text"]), labels=gold[str(row["id"])], language=str(row["language"])
            )
            for row in sorted(tickets, key=lambda r: str(r["id"]))
            if split[str(row["id"])] == name
        ]
        for name in SPLITS
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in examples.items():
        write_jsonl(out / f"{name}.jsonl", rows)
        (out / f"{name}.jsonl").chmod(0o644)  # write_jsonl's temp file is private; these are shared data
    with (out / PROXY_SECOND_ANNOTATION).open("w", encoding="utf-8") as fh:
        for ticket_id in sorted(second):
            fh.write(json.dumps({"id": ticket_id, "labels": list(second[ticket_id])}, ensure_ascii=False) + "\n")
    shutil.copyfile(source / "guidelines.md", out / "guidelines.md")


def load_splits(folder: Path = HERE, taxonomy: Taxonomy | None = None) -> dict[str, list[Example]]:
    taxonomy = taxonomy or load_taxonomy("eurochef")
    return {name: read_examples(folder / f"{name}.jsonl", taxonomy) for name in SPLITS}


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    align = ["---"] * left + ["---:"] * (len(header) - left)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def label_counts_markdown(splits: Mapping[str, Sequence[Example]], taxonomy: Taxonomy) -> str:
    """Tickets per label, per split and language, with ticket totals and mean labels per ticket."""
    columns = [(s, lang) for s in SPLITS for lang in (*LANGUAGES, None)]
    short = {"validation": "val", "test": "test"}
    header = ["label", "group"] + [f"{short[s]} {lang or 'all'}" for s, lang in columns] + ["total"]

    def pick(s: str, lang: str | None) -> list[Example]:
        return [ex for ex in splits[s] if lang is None or ex.language == lang]

    everything = [ex for s in SPLITS for ex in splits[s]]
    rows: list[list[object]] = []
    for name in taxonomy.names:
        counts = [sum(name in ex.labels for ex in pick(s, lang)) for s, lang in columns]
        rows.append([name, taxonomy.group_of(name), *counts, sum(name in ex.labels for ex in everything)])
    rows.append(["**tickets**", "", *[len(pick(s, lang)) for s, lang in columns], len(everything)])

    def mean_labels(examples: Sequence[Example]) -> str:
        return f"{statistics.fmean(len(ex.labels) for ex in examples):.2f}"

    rows.append(
        ["**labels per ticket**", "", *[mean_labels(pick(s, lang)) for s, lang in columns], mean_labels(everything)]
    )
    return _table(header, rows, left=2)


def length_markdown(splits: Mapping[str, Sequence[Example]]) -> str:
    """Ticket length in characters and whitespace-separated words, per language and split."""
    everything = [ex for s in SPLITS for ex in splits[s]]
    groups: list[tuple[str, list[Example]]] = [
        (lang, [ex for ex in everything if ex.language == lang]) for lang in LANGUAGES
    ]
    groups += [(s, list(splits[s])) for s in SPLITS] + [("all", everything)]
    header = [
        "tickets of",
        "n",
        "chars min",
        "chars median",
        "chars mean",
        "chars max",
        "words median",
        "words mean",
        "over 500 chars",
    ]
    rows = []
    for name, examples in groups:
        chars = [len(ex.text) for ex in examples]
        words = [len(ex.text.split()) for ex in examples]
        rows.append(
            [
                name,
                len(examples),
                min(chars),
                f"{statistics.median(chars):g}",
                f"{statistics.fmean(chars):.0f}",
                max(chars),
                f"{statistics.median(words):g}",
                f"{statistics.fmean(words):.0f}",
                sum(c > 500 for c in chars),
            ]
        )
    return _table(header, rows)


def agreement_by_language_markdown(folder: Path, splits: Mapping[str, Sequence[Example]], taxonomy: Taxonomy) -> str:
    """Where annotator B's tickets fall, and overall agreement per language."""
    second = read_annotations(folder / PROXY_SECOND_ANNOTATION, taxonomy)
    split_of = {ex.id: s for s in SPLITS for ex in splits[s]}
    language_of = {ex.id: ex.language for s in SPLITS for ex in splits[s]}
    header = ["language", "tickets", "in validation", "in test", "exact-match agreement", "micro-F1", "mean kappa"]
    rows = []
    for lang in (*LANGUAGES, None):
        table = proxy_agreement(folder, taxonomy, language=lang)
        ids = [i for i in second if lang is None or language_of.get(i) == lang]
        rows.append(
            [
                lang or "all",
                table.n,
                sum(split_of[i] == "validation" for i in ids),
                sum(split_of[i] == "test" for i in ids),
                f"{table.exact_match:.3f}",
                f"{table.micro_f1:.3f}",
                f"{table.mean_kappa:.3f}",
            ]
        )
    return _table(header, rows)


def generated_blocks(folder: Path = HERE, taxonomy: Taxonomy | None = None) -> dict[str, str]:
    """Every generated block of the datasheet, by name, computed from the files in ``folder``."""
    taxonomy = taxonomy or load_taxonomy("eurochef")
    splits = load_splits(folder, taxonomy)
    blocks: dict[str, Callable[[], str]] = {
        "label_counts": lambda: label_counts_markdown(splits, taxonomy),
        "lengths": lambda: length_markdown(splits),
        "agreement": lambda: agreement_markdown(proxy_agreement(folder, taxonomy)),
        "agreement_by_language": lambda: agreement_by_language_markdown(folder, splits, taxonomy),
    }
    return {name: make() for name, make in blocks.items()}


def datasheet_blocks(text: str) -> dict[str, str]:
    """The generated blocks found in a datasheet's text, by name."""
    return {m["name"]: m["body"] for m in _BLOCK.finditer(text)}


def refresh_datasheet(folder: Path = HERE) -> None:
    """Rewrite every generated block of ``folder/DATASHEET.md``; a block the code does not know is an error."""
    path = folder / DATASHEET
    text = path.read_text(encoding="utf-8")
    blocks = generated_blocks(folder)
    unknown = sorted(set(datasheet_blocks(text)) - set(blocks))
    if unknown:
        raise DataError(f"{path}: unknown generated block(s) {', '.join(unknown)}; known: {', '.join(blocks)}")
    text = _BLOCK.sub(lambda m: m[1] + blocks[m["name"]] + m[4], text)
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--source", type=Path, help="folder with all.jsonl, labels_a*.jsonl, labels_b.jsonl")
    args = parser.parse_args(argv)
    if args.source is not None:
        build_from_source(args.source)
    refresh_datasheet()


if __name__ == "__main__":
    main()
