"""Label taxonomy: the ordered label list, its groups and descriptions, kept as data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from models.errors import DataError

DEFAULT_TAXONOMY = "eurochef"


@dataclass(frozen=True)
class Label:
    name: str
    group: str
    description: str


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of labels, each in one group. Order defines the classifier's output columns."""

    name: str
    labels: tuple[Label, ...]
    exclusive_groups: tuple[str, ...] = ()
    """Groups where at most one label may be predicted (e.g. urgent vs low_priority)."""
    implies: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Label -> labels it always comes with (e.g. aggressive -> frustrated)."""

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    @property
    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for label in self.labels:
            out.setdefault(label.group, []).append(label.name)
        return out

    def group_of(self, name: str) -> str:
        for label in self.labels:
            if label.name == name:
                return label.group
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        groups: dict[str, list[dict[str, str]]] = {}
        for label in self.labels:
            groups.setdefault(label.group, []).append({"name": label.name, "description": label.description})
        return {
            "name": self.name,
            "groups": groups,
            "exclusive_groups": list(self.exclusive_groups),
            "implies": {k: list(v) for k, v in self.implies.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Taxonomy:
        try:
            groups = data["groups"]
            labels = tuple(
                Label(name=str(item["name"]), group=str(group), description=str(item.get("description", "")))
                for group, items in groups.items()
                for item in items
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                "taxonomy must look like {'name': ..., 'groups': {group: [{'name': ..., 'description': ...}]}}; "
                f"failed on {exc!r}"
            ) from exc
        names = [label.name for label in labels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(f"taxonomy has duplicate labels: {', '.join(duplicates)}")
        if not labels:
            raise DataError("taxonomy has no labels")
        exclusive = tuple(str(g) for g in data.get("exclusive_groups", []))
        unknown_groups = [g for g in exclusive if g not in groups]
        if unknown_groups:
            raise DataError(f"exclusive_groups names unknown group(s) {', '.join(unknown_groups)}")
        implies = {str(k): tuple(str(x) for x in v) for k, v in data.get("implies", {}).items()}
        unknown = sorted({n for k, v in implies.items() for n in (k, *v)} - set(names))
        if unknown:
            raise DataError(f"implies names unknown label(s) {', '.join(unknown)}")
        group_of = {label.name: label.group for label in labels}
        into_exclusive = sorted({f"{k} -> {x}" for k, v in implies.items() for x in v if group_of[x] in exclusive})
        if into_exclusive:
            raise DataError(
                f"implies targets label(s) of an exclusive group ({', '.join(into_exclusive)}): an implied label "
                "could then break that group's at-most-one rule; imply labels of non-exclusive groups only"
            )
        return cls(name=str(data.get("name", "custom")), labels=labels, exclusive_groups=exclusive, implies=implies)

    @classmethod
    def from_labels(cls, names: list[str], name: str = "custom") -> Taxonomy:
        """A flat taxonomy (one group) for user data that brings only label names."""
        return cls(name=name, labels=tuple(Label(n, "label", "") for n in names))


def load_taxonomy(source: str | Path = DEFAULT_TAXONOMY) -> Taxonomy:
    """Load a bundled taxonomy by name (e.g. ``eurochef``) or a JSON file by path."""
    path = Path(source)
    if path.suffix == ".json" and path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        try:
            text = resources.files("models.taxonomies").joinpath(f"{source}.json").read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise DataError(f"unknown taxonomy {source!r}: give a bundled name (eurochef) or a .json path") from exc
    return Taxonomy.from_dict(json.loads(text))
