"""Ticket datasets: the example type, JSONL/CSV readers with line-level errors, and dataset folders.

A dataset folder holds ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` and optionally
``test_heldout.jsonl`` (phrasings never seen in training) plus ``taxonomy.json``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import DataError
from models.taxonomy import Taxonomy, load_taxonomy

SPLITS = ("train", "validation", "test", "test_heldout")


@dataclass(frozen=True)
class Example:
    id: str
    text: str
    labels: tuple[str, ...]
    language: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        if not self.meta:
            data.pop("meta")
        return data


def _parse_labels(raw: object, where: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        parts = [p.strip() for p in raw.split(";")]
        return tuple(p for p in parts if p)
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return tuple(x.strip() for x in raw if x.strip())
    raise DataError(f"{where}: 'labels' must be a list of strings or a ';'-separated string, found {raw!r}")


def _example_from_row(row: dict[str, Any], where: str, index: int, known: set[str] | None) -> Example:
    missing = [c for c in ("text", "labels") if c not in row]
    if missing:
        raise DataError(f"{where}: expected columns text, labels; found {', '.join(sorted(row)) or 'nothing'}")
    text = row["text"]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: 'text' must be a non-empty string, found {text!r}")
    labels = _parse_labels(row["labels"], where)
    if known is not None:
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise DataError(
                f"{where}: unknown label(s) {', '.join(unknown)}; the taxonomy has {', '.join(sorted(known))}"
            )
    language = row.get("language") or None
    return Example(
        id=str(row.get("id") or f"row-{index}"),
        text=text,
        labels=labels,
        language=str(language) if language else None,
        meta=dict(row["meta"]) if isinstance(row.get("meta"), dict) else {},
    )


def read_examples(path: str | Path, taxonomy: Taxonomy | None = None) -> list[Example]:
    """Read ``.jsonl`` or ``.csv`` with ``text`` and ``labels``; errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    known = set(taxonomy.names) if taxonomy else None
    examples: list[Example] = []
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for index, row in enumerate(reader, start=2):
                examples.append(_example_from_row(dict(row), f"{path}:{index}", index, known))
    elif path.suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as fh:
            for index, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{index}: invalid JSON ({exc.msg})") from exc
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{index}: expected a JSON object, found {type(row).__name__}")
                examples.append(_example_from_row(row, f"{path}:{index}", index, known))
    else:
        raise DataError(f"{path}: unsupported format {path.suffix!r}; use .jsonl or .csv")
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def multi_hot(label_lists: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """A (rows, labels) boolean matrix, True where a row names the label; names not in ``labels`` are ignored."""
    index = {name: i for i, name in enumerate(labels)}
    out = np.zeros((len(label_lists), len(labels)), dtype=bool)
    for row, names in enumerate(label_lists):
        for name in names:
            if name in index:
                out[row, index[name]] = True
    return out


def label_matrix(examples: Sequence[Example], labels: Sequence[str]) -> np.ndarray:
    """The examples' gold labels as a (examples, labels) 0/1 float32 matrix (training targets)."""
    return multi_hot([ex.labels for ex in examples], labels).astype(np.float32)


def write_jsonl(path: str | Path, examples: Iterable[Example]) -> None:
    """Write examples atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Dataset:
    """A dataset folder loaded into memory."""

    root: Path
    taxonomy: Taxonomy
    splits: dict[str, list[Example]]

    def split(self, name: str) -> list[Example]:
        if name not in self.splits:
            raise DataError(f"{self.root}: no {name} split; found {', '.join(self.splits) or 'none'}")
        return self.splits[name]

    def fingerprint(self) -> str:
        """A short hash of every split's content, stored in checkpoint manifests."""
        digest = hashlib.sha256()
        for name in sorted(self.splits):
            for ex in self.splits[name]:
                digest.update(f"{name}\t{ex.id}\t{ex.text}\t{';'.join(ex.labels)}\n".encode())
        return digest.hexdigest()[:16]


def load_dataset(root: str | Path) -> Dataset:
    """Load a dataset folder. Its taxonomy comes from ``taxonomy.json`` if present, else the labels seen."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found (create one with `triage generate-data --out {root}`)")
    taxonomy_file = root / "taxonomy.json"
    taxonomy = load_taxonomy(taxonomy_file) if taxonomy_file.exists() else None
    splits: dict[str, list[Example]] = {}
    for name in SPLITS:
        for suffix in (".jsonl", ".csv"):
            file = root / f"{name}{suffix}"
            if file.exists():
                splits[name] = read_examples(file, taxonomy)
                break
    for required in ("train", "validation"):
        if required not in splits:
            raise DataError(f"{root}: missing {required}.jsonl (or .csv); found {', '.join(splits) or 'no splits'}")
    if taxonomy is None:
        seen = sorted({label for examples in splits.values() for ex in examples for label in ex.labels})
        taxonomy = Taxonomy.from_labels(seen)
    return Dataset(root=root, taxonomy=taxonomy, splits=splits)
