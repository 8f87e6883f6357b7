"""`triage retrain`: a worse candidate is refused, a better one promoted and served; rollback restores."""

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from app.jobs.retrain import RetrainConfig, retrain, rollback
from app.server.settings import Settings
from models.checkpoint import read_manifest
from models.errors import DataError
from tests.conftest import running_server
from tests.llm_fixtures import adapter_dir  # noqa: F401


def corrupted_copy(dataset_dir: Path, out: Path) -> Path:
    """The same validation and test splits, but train labels shuffled across tickets: a deliberately worse model."""
    shutil.copytree(dataset_dir, out)
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    labels = [row["labels"] for row in rows]
    random.Random(0).shuffle(labels)
    lines = [json.dumps({**row, "labels": shuffled}) + "\n" for row, shuffled in zip(rows, labels, strict=True)]
    (out / "train.jsonl").write_text("".join(lines))
    return out


def test_retrain_promotes_better_refuses_worse_and_rolls_back(tmp_path: Path, dataset_dir: Path) -> None:
    out = tmp_path / "checkpoints"
    bad_data = corrupted_copy(dataset_dir, tmp_path / "bad-data")

    first = retrain(RetrainConfig(data=bad_data, out=out, epochs=2), progress=False)
    assert first["promoted"] and first["current_value"] is None  # nothing served yet: the first is promoted
    bad_version = Path(first["candidate"])

    better = retrain(RetrainConfig(data=dataset_dir, out=out, epochs=4), progress=False)
    assert better["promoted"], better
    assert better["candidate_value"] > better["current_value"]
    assert (out / "default").resolve() == Path(better["candidate"]).resolve()
    assert (Path(better["candidate"]) / "comparison.md").read_text().count("promoted") >= 1

    worse = retrain(RetrainConfig(data=bad_data, out=out, epochs=2), progress=False)
    assert not worse["promoted"], worse
    assert (out / "default").resolve() == Path(better["candidate"]).resolve()  # still the better one
    assert "refused" in (Path(worse["candidate"]) / "comparison.md").read_text()

    served = read_manifest(out / "default" / "encoder").version
    with running_server(Settings(encoder_path=out / "default" / "encoder", llm_backend="none")) as url:
        assert httpx.get(f"{url}/info").json()["encoder"]["version"] == served
    router = read_manifest(out / "default" / "encoder").router_threshold()
    assert router[0] is not None and "target-escalation 0.15" in router[1]

    assert rollback(out).resolve() == bad_version.resolve()
    assert (out / "default").resolve() == bad_version.resolve()
    assert len(json.loads((out / "history.json").read_text())) == 1


def test_a_plain_default_folder_is_adopted_as_a_version(tmp_path: Path, encoder_dir: Path, dataset_dir: Path) -> None:
    out = tmp_path / "checkpoints"
    shutil.copytree(encoder_dir, out / "default" / "encoder")  # what `triage build-default` leaves
    traffic = Path(shutil.copy(dataset_dir / "validation.jsonl", tmp_path / "traffic.jsonl"))  # stands in for the proxy
    config = RetrainConfig(data=dataset_dir, out=out, epochs=1, margin=1.0, calibration=traffic)
    decision = retrain(config, progress=False)
    assert decision["promoted"]  # margin 1.0: anything not worse by a full point of F1
    version = read_manifest(encoder_dir).version
    assert (out / "versions" / version / "encoder").is_dir()
    assert (out / "default").is_symlink()
    candidate = read_manifest(Path(decision["candidate"]) / "encoder")
    assert candidate.metrics["calibration"]["data"] == str(traffic)  # temperatures and thresholds fitted on it
    assert candidate.router_threshold()[1].endswith(f"on {traffic}")  # and the operating point
    with pytest.raises(DataError, match="calibration file does not exist"):
        retrain(replace(config, calibration=tmp_path / "missing.jsonl"), progress=False)


def test_retrain_without_adapter_carries_the_served_adapter_forward(
    tmp_path: Path,
    encoder_dir: Path,
    dataset_dir: Path,
    adapter_dir: Path,  # noqa: F811
) -> None:
    """A promotion never drops the LLM tier: escalations on the new version still answer `done`."""
    from transformers import AutoTokenizer

    from tests.fake_openai import FakeOpenAI, serve

    out = tmp_path / "checkpoints"
    shutil.copytree(encoder_dir, out / "default" / "encoder")
    adapter = Path(shutil.copytree(adapter_dir, out / "default" / "adapter"))
    served = read_manifest(adapter, kind="adapter").version
    decision = retrain(RetrainConfig(data=dataset_dir, out=out, epochs=1, margin=1.0), progress=False)
    assert decision["promoted"]
    assert read_manifest(out / "default" / "adapter", kind="adapter").version == served
    with serve(FakeOpenAI(tokenizer=AutoTokenizer.from_pretrained(adapter))) as llm_url:
        settings = Settings(
            encoder_path=out / "default" / "encoder", llm_backend="openai", llm_endpoint=llm_url, llm_timeout_s=5
        )
        with running_server(settings) as url:
            response = httpx.post(f"{url}/classify", json={"text": "charged twice!", "escalation": "force"}, timeout=30)
            assert response.json()["results"][0]["escalation"] == "done"
            assert httpx.get(f"{url}/info").json()["llm"]["adapter_version"] == served
