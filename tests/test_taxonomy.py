import json
from pathlib import Path

import pytest

from models.errors import DataError
from models.taxonomy import Taxonomy, load_taxonomy


def test_default_taxonomy_has_fifteen_labels_in_four_groups() -> None:
    taxonomy = load_taxonomy()
    assert len(taxonomy.names) == 15
    assert set(taxonomy.groups) == {"topic", "urgency", "user_type", "emotion"}
    assert all(label.description for label in taxonomy.labels)
    assert taxonomy.implies["aggressive"] == ("frustrated",)


def test_round_trip_through_dict(tmp_path: Path) -> None:
    taxonomy = load_taxonomy()
    path = tmp_path / "tax.json"
    path.write_text(json.dumps(taxonomy.to_dict()))
    assert load_taxonomy(path) == taxonomy


def test_duplicates_and_unknown_references_are_rejected() -> None:
    with pytest.raises(DataError, match="duplicate labels: a"):
        Taxonomy.from_dict({"groups": {"g": [{"name": "a"}, {"name": "a"}]}})
    with pytest.raises(DataError, match="unknown label"):
        Taxonomy.from_dict({"groups": {"g": [{"name": "a"}]}, "implies": {"a": ["zz"]}})
    with pytest.raises(DataError, match="unknown taxonomy"):
        load_taxonomy("no-such-taxonomy")


def test_an_implication_into_an_exclusive_group_is_refused() -> None:
    data = load_taxonomy().to_dict()
    data["implies"] = {"aggressive": ["frustrated", "urgent"]}
    with pytest.raises(DataError, match=r"exclusive group \(aggressive -> urgent\)"):
        Taxonomy.from_dict(data)
