import json
from pathlib import Path

import pytest

from models.datasets import Example, label_matrix, load_dataset, multi_hot, read_examples, write_jsonl
from models.errors import DataError
from models.taxonomy import load_taxonomy


def test_jsonl_round_trip(tmp_path: Path) -> None:
    examples = [Example("1", "app crash", ("technical_issue",), "en"), Example("2", "merci", (), "fr")]
    write_jsonl(tmp_path / "x.jsonl", examples)
    assert read_examples(tmp_path / "x.jsonl") == examples


def test_csv_with_semicolon_labels(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('text,labels\n"charged twice, refund!",billing;urgent\nthanks,\n')
    examples = read_examples(path, load_taxonomy())
    assert examples[0].labels == ("billing", "urgent")
    assert examples[1].labels == ()


def test_missing_column_names_line_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "ok", "labels": []}) + "\n" + json.dumps({"text": "x", "tags": ["a"]}) + "\n")
    with pytest.raises(DataError, match=r"t\.jsonl:2: expected columns text, labels; found tags, text"):
        read_examples(path)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a", "labels": []}\n{oops\n')
    with pytest.raises(DataError, match=r"t\.jsonl:2: invalid JSON"):
        read_examples(path)


def test_unknown_label_is_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "a", "labels": ["billing", "refunds"]}) + "\n")
    with pytest.raises(DataError, match=r"t\.jsonl:1: unknown label\(s\) refunds"):
        read_examples(path, load_taxonomy())


def test_empty_text_and_bad_labels_type(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "  ", "labels": []}) + "\n")
    with pytest.raises(DataError, match="non-empty string"):
        read_examples(path)
    path.write_text(json.dumps({"text": "a", "labels": 3}) + "\n")
    with pytest.raises(DataError, match="list of strings"):
        read_examples(path)


def test_dataset_folder_without_taxonomy_uses_labels_seen(tmp_path: Path) -> None:
    for split in ("train", "validation"):
        write_jsonl(tmp_path / f"{split}.jsonl", [Example("1", "hi", ("b", "a"))])
    dataset = load_dataset(tmp_path)
    assert dataset.taxonomy.names == ["a", "b"]
    assert len(dataset.fingerprint()) == 16


def test_dataset_folder_missing_split_is_explained(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [Example("1", "hi", ("a",))])
    with pytest.raises(DataError, match=r"missing validation\.jsonl"):
        load_dataset(tmp_path)
    with pytest.raises(DataError, match="triage generate-data"):
        load_dataset(tmp_path / "nope")


def test_label_lists_become_multi_hot_rows_in_label_order() -> None:
    labels = ["billing", "urgent", "frustrated"]
    hot = multi_hot([["urgent", "billing"], [], ["not_a_label", "frustrated"]], labels)
    assert hot.dtype == bool
    assert hot.tolist() == [[True, True, False], [False, False, False], [False, False, True]]
    examples = [Example(id="a", text="x", labels=("frustrated",))]
    targets = label_matrix(examples, labels)
    assert targets.dtype.name == "float32" and targets.tolist() == [[0.0, 0.0, 1.0]]
