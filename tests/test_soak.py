"""`triage soak` against a real server subprocess at twice its measured capacity (a short run; README has the
60-second figures): every request is answered 200 or refused with Retry-After, none is lost."""

from __future__ import annotations

from pathlib import Path

from app.jobs.soak import SoakConfig, format_soak, run_soak


def test_overload_is_answered_not_lost(encoder_dir: Path, dataset_dir: Path, tmp_path: Path) -> None:
    config = SoakConfig(
        encoder=encoder_dir,
        data=dataset_dir,
        duration_s=4.0,
        capacity_s=2.0,
        max_queue_wait_s=0.5,
        out=tmp_path / "soak.json",
    )
    result = run_soak(config, progress=False)
    assert result["sent"] > 0 and result["statuses"].get("200", 0) > 0
    assert result["lost"] == 0, result["statuses"]
    assert result["unexpected"] == 0, result["statuses"]
    assert result["refused_without_retry_after"] == 0
    assert set(result["statuses"]) <= {"200", "429", "503"}
    assert (tmp_path / "soak.json").exists()
    assert "lost 0" in format_soak(result)
    assert result["server_ms"]["p50"] is not None  # read from the server's own latency histogram


def test_server_quantiles_read_the_bucket_bounds() -> None:
    from app.jobs.soak import server_quantiles

    text = "\n".join(
        f'triage_request_duration_seconds_bucket{{route="/classify",le="{le}"}} {count}'
        for le, count in (("0.1", 50.0), ("0.5", 99.0), ("1.0", 100.0), ("+Inf", 100.0))
    )
    assert server_quantiles(text) == {"p50": 100.0, "p99": 500.0}
    assert server_quantiles("") == {"p50": None, "p99": None}
