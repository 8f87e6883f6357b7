"""`triage bench --peers`: triage and the serving peers on one model, the same tickets and the same load client.

Real servers on loopback, real HTTP: triage (``triage serve``) and the naive FastAPI peer always run; a peer whose
package is absent is reported as skipped while the others still run. The peers that ``make peers`` installs
(BentoML, Ray Serve, Infinity) have a slow test each, skipped where they are not installed.
"""

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from app.jobs.bench_peers import PEERS, PeersConfig, peer_python, peer_ratios, run_peers, skip_reason

ABSENT_MODULE = "triage_tests_no_such_package"


@pytest.fixture(autouse=True)
def one_thread_per_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the servers share the machine's cores with the client


def stock_copy(encoder_dir: Path, out: Path) -> Path:
    """The same weights under the stock DebertaV2ForSequenceClassification head (CLS pooling): a stock checkpoint."""
    shutil.copytree(encoder_dir, out)
    config = json.loads((out / "config.json").read_text())
    config.pop("pooling", None)
    config["architectures"] = ["DebertaV2ForSequenceClassification"]
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_triage_and_the_naive_peer_side_by_side_and_an_absent_peer_skipped(
    tmp_path: Path, encoder_dir: Path, dataset_dir: Path
) -> None:
    absent = replace(PEERS["naive"], name="absent", title="Absent", requires=ABSENT_MODULE)
    out = tmp_path / "bench" / "peers.json"
    config = PeersConfig(
        encoder=encoder_dir,
        data=dataset_dir,
        systems=("naive", "absent"),  # triage is always measured, first
        concurrency_levels=(1, 4),
        requests=16,
        out=out,
        peers_dir=tmp_path / "no-venvs",
        peers={**PEERS, "absent": absent},
    )
    result = run_peers(config, progress=False)
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    assert list(saved["systems"]) == ["triage", "naive"] and saved["failed"] == {}
    assert ABSENT_MODULE in saved["skipped"]["absent"] and "`make peers`" in saved["skipped"]["absent"]
    for system in saved["systems"].values():
        assert list(system["levels"]) == ["1", "4"]
        assert system["rss_mib_warm"] > 100  # a Python process with torch and the model loaded
        for run in system["levels"].values():
            assert run["requests"] == run["ok"] == 16 and run["failures"] == {}  # every request came back 200
            assert run["tickets_per_s"] > 0 and 0 < run["p50_ms"] <= run["p99_ms"]
            assert run["rss_mib"] >= 100
    triage, naive = saved["systems"]["triage"]["levels"], saved["systems"]["naive"]["levels"]
    assert triage["4"]["mean_batch_size"] >= 1.0 and naive["4"]["mean_batch_size"] is None  # triage's /metrics only
    for level in ("1", "4"):
        ratios = saved["ratios"][level]
        speed = round(triage[level]["tickets_per_s"] / naive[level]["tickets_per_s"], 3)
        assert ratios["throughput"] == {"best_peer": "naive", "ratio": speed}
        assert ratios["p99"] == {
            "best_peer": "naive",
            "ratio": round(triage[level]["p99_ms"] / naive[level]["p99_ms"], 3),
        }
        assert ratios["excluded_for_failures"] == []
    assert out.with_suffix(".png").stat().st_size > 5000
    assert (out.parent / "peers-logs" / "naive.log").exists()


def run(tickets_per_s: float, p99_ms: float, failures: dict[str, int] | None = None) -> dict[str, Any]:
    return {"tickets_per_s": tickets_per_s, "p99_ms": p99_ms, "failures": failures or {}, "ok": 10}


def test_ratios_compare_triage_with_the_best_peer_that_answered_everything() -> None:
    systems = {
        "triage": {"levels": {"8": run(30.0, 200.0), "32": run(40.0, 900.0)}},
        "steady": {"levels": {"8": run(20.0, 150.0), "32": run(10.0, 3000.0)}},
        "fast": {"levels": {"8": run(25.0, 400.0)}},  # stopped before 32 clients
        "shedding": {"levels": {"8": run(90.0, 10.0, {"503": 4}), "32": run(90.0, 10.0, {"ReadTimeout": 1})}},
    }
    ratios = peer_ratios(systems, [8, 32])
    assert ratios["8"] == {
        "excluded_for_failures": ["shedding"],  # 90 answered tickets/s, but it refused some: not the best peer
        "throughput": {"best_peer": "fast", "ratio": 1.2},
        "p99": {"best_peer": "steady", "ratio": 1.333},
    }
    assert ratios["32"]["throughput"] == {"best_peer": "steady", "ratio": 4.0}
    assert ratios["32"]["p99"] == {"best_peer": "steady", "ratio": 0.3}
    only_failing = {"triage": systems["triage"], "shedding": systems["shedding"]}
    assert peer_ratios(only_failing, [8])["8"]["throughput"] is None


def test_a_peer_that_builds_the_stock_head_itself_is_skipped_for_a_custom_pooling(
    tmp_path: Path, encoder_dir: Path
) -> None:
    infinity = PEERS["infinity"]
    assert json.loads((encoder_dir / "config.json").read_text())["pooling"] == "mean"
    reason = skip_reason(infinity, encoder_dir, sys.executable, tmp_path)
    assert reason is not None and "mean pooling" in reason and "--architecture mdeberta-v3-base" in reason
    stock = stock_copy(encoder_dir, tmp_path / "stock")
    assert skip_reason(infinity, stock, sys.executable, tmp_path) is None
    assert skip_reason(PEERS["naive"], encoder_dir, sys.executable, tmp_path) is None  # it loads the pooling class
    missing = skip_reason(infinity, stock, None, tmp_path)
    assert missing is not None and "`make peers`" in missing and str(tmp_path / "infinity") in missing


def test_a_peer_runs_on_the_python_that_has_its_package(tmp_path: Path) -> None:
    assert peer_python(PEERS["naive"], tmp_path) == sys.executable  # no venv of its own: triage's has FastAPI
    assert peer_python(replace(PEERS["naive"], requires=ABSENT_MODULE), tmp_path) is None
    venv = tmp_path / "naive" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # stands for a venv's python
    (venv / "python").chmod(0o755)
    assert peer_python(PEERS["naive"], tmp_path) == str(venv / "python")  # its own venv first


def test_cli_refuses_an_unknown_peer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--peers", "naive,torchserve"]) == 2
    assert "unknown peer(s) torchserve" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--peers", "--concurrency-levels", "1,0"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bentoml", "ray", "infinity"])
def test_an_installed_peer_answers_every_request(
    name: str, tmp_path: Path, encoder_dir: Path, dataset_dir: Path
) -> None:
    peer = PEERS[name]
    if peer_python(peer, PeersConfig().peers_dir) is None:
        pytest.skip(f"{peer.title} is not installed (make peers)")
    out = tmp_path / "peers.json"
    config = PeersConfig(
        encoder=stock_copy(encoder_dir, tmp_path / "stock"),  # Infinity serves stock checkpoints only
        data=dataset_dir,
        systems=(name,),
        concurrency_levels=(1, 8),
        requests=24,
        out=out,
    )
    result = run_peers(config, progress=False)
    assert result["skipped"] == {} and result["failed"] == {}
    assert "{" not in result["systems"][name]["settings"] and "32" in result["systems"][name]["settings"]
    for run_ in result["systems"][name]["levels"].values():
        assert run_["ok"] == run_["requests"] == 24 and run_["failures"] == {}
    assert result["ratios"]["8"]["throughput"]["best_peer"] == name
