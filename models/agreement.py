"""Inter-annotator agreement for multi-label annotations: per-label Cohen's kappa and positive agreement.

Two annotations of the same tickets are compared label by label, each label as a yes/no decision:

- Cohen's kappa: ``(p_o - p_e) / (1 - p_e)``, where ``p_o`` is the share of tickets on which both annotators
  agree (both give the label, or neither does) and ``p_e = p_a * p_b + (1 - p_a) * (1 - p_b)`` the agreement
  expected by chance from each annotator's own rate. Undefined (NaN) when ``p_e == 1``: both annotators gave
  the same constant answer, so there is nothing to correct for chance.
- Positive specific agreement: ``2 * both / (count_a + count_b)``, the F1 of either annotator against the
  other on that label; it ignores the (usually large) agreement on absent labels. NaN when neither gives it.

Overall, exact-match agreement (identical label sets) and micro-F1 of B scored against A as the reference,
computed with :func:`models.scoring.score`, the same metric code that scores models on the proxy set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.datasets import multi_hot, read_examples
from models.errors import DataError
from models.scoring import score
from models.taxonomy import Taxonomy, load_taxonomy

Annotation = Mapping[str, Sequence[str]]
"""One annotator's labels: ticket id -> label names."""

PROXY_DIR = Path(__file__).resolve().parent.parent / "evalsets" / "proxy"
PROXY_GOLD_SPLITS = ("validation", "test")
PROXY_SECOND_ANNOTATION = "second_annotation.jsonl"

_SHOW_IDS = 10


@dataclass(frozen=True)
class LabelAgreement:
    """Agreement on one label: how often each annotator gave it, how often both did, kappa and positive agreement."""

    label: str
    count_a: int
    count_b: int
    both: int
    kappa: float
    positive_agreement: float


@dataclass(frozen=True)
class AgreementTable:
    """Per-label and overall agreement of annotation B with annotation A on ``n`` tickets."""

    n: int
    per_label: tuple[LabelAgreement, ...]
    exact_match: float
    """Share of tickets whose two label sets are identical."""
    micro_f1: float
    """Micro-F1 of B against A as the reference (symmetric: swapping A and B gives the same value)."""

    @property
    def mean_kappa(self) -> float:
        """Mean of the per-label kappas that are defined (NaN if none is)."""
        defined = [row.kappa for row in self.per_label if not math.isnan(row.kappa)]
        return float(np.mean(defined)) if defined else math.nan

    def label(self, name: str) -> LabelAgreement:
        for row in self.per_label:
            if row.label == name:
                return row
        raise KeyError(name)


def cohen_kappa(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Cohen's kappa of two yes/no vectors of equal length (NaN when chance agreement is 1, see module doc)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"expected two non-empty 1-d vectors of equal length, found shapes {a.shape} and {b.shape}")
    observed = float(np.mean(a == b))
    rate_a, rate_b = float(np.mean(a)), float(np.mean(b))
    expected = rate_a * rate_b + (1.0 - rate_a) * (1.0 - rate_b)
    if expected >= 1.0:
        return math.nan
    return (observed - expected) / (1.0 - expected)


def positive_agreement(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Positive specific agreement ``2 * both / (count_a + count_b)`` (NaN when neither vector has a positive)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"expected two vectors of equal length, found shapes {a.shape} and {b.shape}")
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else math.nan


def _id_list(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_SHOW_IDS])
    return shown + (f" (and {len(ids) - _SHOW_IDS} more)" if len(ids) > _SHOW_IDS else "")


def check_same_ids(a: Annotation, b: Annotation) -> list[str]:
    """The shared ticket ids, sorted; a DataError naming the ids that only one annotation has otherwise."""
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in A: {_id_list(only_a)}")
        if only_b:
            parts.append(f"{len(only_b)} only in B: {_id_list(only_b)}")
        raise DataError(
            f"the two annotations cover different tickets ({'; '.join(parts)}); compare annotations of the same tickets"
        )
    if not a:
        raise DataError("the two annotations are empty; compare annotations of at least one ticket")
    return sorted(a)


def _check_known(annotation: Annotation, labels: Sequence[str], who: str) -> None:
    known = set(labels)
    unknown = sorted({(ticket, name) for ticket, names in annotation.items() for name in names if name not in known})
    if unknown:
        found = ", ".join(f"{name} on {ticket}" for ticket, name in unknown[:_SHOW_IDS])
        raise DataError(f"annotation {who} uses label(s) outside the label list ({found}); known: {', '.join(labels)}")


def agreement(a: Annotation, b: Annotation, labels: Sequence[str]) -> AgreementTable:
    """Per-label and overall agreement of annotation ``b`` with annotation ``a`` over ``labels``.

    Both annotations must cover exactly the same ticket ids (the error names the ids that differ) and use only
    names from ``labels``. ``a`` is the reference for micro-F1; every other number is symmetric in A and B.
    """
    ids = check_same_ids(a, b)
    _check_known(a, labels, "A")
    _check_known(b, labels, "B")
    names = list(labels)
    ma = multi_hot([a[i] for i in ids], names)
    mb = multi_hot([b[i] for i in ids], names)
    rows = tuple(
        LabelAgreement(
            label=name,
            count_a=int(ma[:, k].sum()),
            count_b=int(mb[:, k].sum()),
            both=int((ma[:, k] & mb[:, k]).sum()),
            kappa=cohen_kappa(ma[:, k], mb[:, k]),
            positive_agreement=positive_agreement(ma[:, k], mb[:, k]),
        )
        for k, name in enumerate(names)
    )
    overall = score(ma, mb, names)
    return AgreementTable(n=len(ids), per_label=rows, exact_match=overall.exact_match, micro_f1=overall.f1_micro)


def read_annotations(path: str | Path, taxonomy: Taxonomy | None = None) -> dict[str, tuple[str, ...]]:
    """Read a ``{"id", "labels"}`` JSONL file into id -> labels; errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    known = set(taxonomy.names) if taxonomy else None
    out: dict[str, tuple[str, ...]] = {}
    with path.open(encoding="utf-8") as fh:
        for index, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{index}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("id"), str) or "labels" not in row:
                raise DataError(
                    f"{where}: expected an object with 'id' (a string) and 'labels', "
                    f"found {', '.join(sorted(row)) if isinstance(row, dict) else type(row).__name__}"
                )
            raw = row["labels"]
            if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
                raise DataError(f"{where}: 'labels' must be a list of strings, found {raw!r}")
            if known is not None and (unknown := [x for x in raw if x not in known]):
                raise DataError(
                    f"{where}: unknown label(s) {', '.join(unknown)}; the taxonomy has {', '.join(sorted(known))}"
                )
            if row["id"] in out:
                raise DataError(f"{where}: duplicate id {row['id']!r}")
            out[row["id"]] = tuple(raw)
    if not out:
        raise DataError(f"{path}: no annotations")
    return out


def proxy_agreement(
    folder: str | Path = PROXY_DIR, taxonomy: Taxonomy | None = None, language: str | None = None
) -> AgreementTable:
    """Agreement of the proxy set's second annotation with its gold labels, on the tickets both annotated.

    The gold labels are those of ``validation.jsonl`` and ``test.jsonl``; the second annotation covers a subset
    of them. ``language`` restricts the comparison to that language's tickets.
    """
    folder = Path(folder)
    taxonomy = taxonomy or load_taxonomy("eurochef")
    examples = [ex for split in PROXY_GOLD_SPLITS for ex in read_examples(folder / f"{split}.jsonl", taxonomy)]
    gold = {ex.id: ex.labels for ex in examples}
    second = read_annotations(folder / PROXY_SECOND_ANNOTATION, taxonomy)
    # every doubly annotated ticket must have gold labels; the id check names any that has not
    check_same_ids({i: gold[i] for i in second if i in gold}, second)
    if language is not None:
        in_language = {ex.id for ex in examples if ex.language == language}
        if not in_language & set(second):
            raise DataError(f"{folder}: no doubly annotated tickets in language {language!r}")
        second = {i: labels for i, labels in second.items() if i in in_language}
    return agreement({i: gold[i] for i in second}, second, taxonomy.names)


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def agreement_markdown(table: AgreementTable) -> str:
    """The agreement table as Markdown: one row per label, then the overall numbers."""
    lines = [
        "| label | A | B | both | Cohen's kappa | positive agreement |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {row.label} | {row.count_a} | {row.count_b} | {row.both} | {_number(row.kappa)} "
        f"| {_number(row.positive_agreement)} |"
        for row in table.per_label
    ]
    lines += [
        "",
        "| tickets | exact-match agreement | micro-F1 (B against A) | mean per-label kappa |",
        "|---:|---:|---:|---:|",
        f"| {table.n} | {_number(table.exact_match)} | {_number(table.micro_f1)} | {_number(table.mean_kappa)} |",
    ]
    return "\n".join(lines) + "\n"
