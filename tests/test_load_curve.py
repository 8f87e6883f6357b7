"""`triage load-curve` against a real server subprocess with a tiny encoder and a few requests per level (README has
the full runs): every request is answered, the acceptance ratio comes from the measured values, the PNG exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.cli import _load_curve, build_parser
from app.jobs.load_curve import Counters, LoadCurveConfig, format_load_curve, poisson_schedule, run_load_curve


def test_load_curve_answers_every_request_and_measures_the_ratio(
    encoder_dir: Path, dataset_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "curve" / "load_curve.json"
    config = LoadCurveConfig(
        encoder=encoder_dir,
        data=dataset_dir,
        threads=1,
        max_batch_size=8,
        fractions=(0.25, 1.2),
        requests_per_level=30,
        capacity_requests=64,
        full_batches=2,
        out=out,
    )
    result = run_load_curve(config, progress=False)
    assert json.loads(out.read_text()) == result
    assert out.with_suffix(".png").stat().st_size > 1000

    levels = result["levels"]
    assert [level["fraction"] for level in levels] == [0.25, 0.5, 1.2]  # the acceptance level is always measured
    for level in levels:
        assert sum(level["statuses"].values()) == level["sent"] == 30
        assert set(level["statuses"]) <= {"200", "429", "503"}, level["statuses"]
        assert level["lost"] == level["unexpected"] == level["refused_without_retry_after"] == 0
        assert level["answered"] + level["refused"] == 30 and level["answered"] > 0
        assert level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"] <= level["max_ms"]
        assert level["mean_batch_size"] is not None and 1 <= level["mean_batch_size"] <= 8
        assert level["target_per_s"] == round(level["fraction"] * result["capacity"]["tickets_per_s"], 2)

    full, acceptance = result["full_batch"], result["acceptance"]
    assert full["tickets"] == 8 and full["forward_ms"] > 0 and full["passes_per_batch"] >= 1
    assert result["capacity"]["tickets_per_s"] > 0 and result["capacity"]["concurrency"] == 16
    half = levels[1]
    assert acceptance["p99_ms"] == half["p99_ms"]
    assert acceptance["full_batch_forward_ms"] == full["forward_ms"]
    assert acceptance["p99_over_full_batch"] == round(half["p99_ms"] / full["forward_ms"], 3)
    assert acceptance["met"] == (acceptance["p99_over_full_batch"] <= 2.0)
    assert f"= {acceptance['p99_over_full_batch']:.2f}" in format_load_curve(result)


def test_counters_difference_reads_one_phase_of_the_servers_metrics() -> None:
    def text(forward: float, passes: float, tickets: float, buckets: tuple[float, float, float]) -> str:
        lines = [
            f'triage_inference_seconds_sum{{tier="encoder"}} {forward}',
            f'triage_inference_seconds_count{{tier="encoder"}} {passes}',
            f'triage_inference_seconds_sum{{tier="llm"}} {99.0}',  # another tier: ignored
            f'triage_batch_size_sum{{tier="encoder"}} {tickets}',
            *(
                f'triage_request_duration_seconds_bucket{{le="{le}",route="/classify"}} {count}'
                for le, count in zip(("0.01", "0.1", "+Inf"), buckets, strict=True)
            ),
            'triage_request_duration_seconds_bucket{le="0.01",route="/metrics"} 500.0',  # another route: ignored
        ]
        return "\n".join(lines)

    before = Counters.parse(text(1.0, 10, 40, (5, 10, 10)))
    after = Counters.parse(text(1.5, 14, 72, (55, 109, 110)))
    spent = after - before
    assert (spent.forward_s, spent.passes, spent.tickets) == (0.5, 4, 32)
    assert spent.buckets == ((0.01, 50), (0.1, 99), (float("inf"), 100))
    assert spent.quantile_bound_ms(0.5) == 10.0 and spent.quantile_bound_ms(0.99) == 100.0
    assert spent.quantile_bound_ms(0.999) is None  # in the +Inf bucket: no bound


def test_poisson_schedule_has_the_asked_rate_and_is_reproducible() -> None:
    times = poisson_schedule(rate=50.0, n=4000, seed=3)
    assert times[0] == 0 and np.all(np.diff(times) >= 0)
    assert abs(np.mean(np.diff(times)) - 1 / 50) < 0.002
    assert np.array_equal(times, poisson_schedule(rate=50.0, n=4000, seed=3))


def test_the_cli_builds_the_config_from_flags() -> None:
    args = build_parser().parse_args(
        ["load-curve", "--architecture", "mdeberta-v3-base", "--fractions", "0.5", "1", "--requests-per-level", "7"]
    )
    assert args.func is _load_curve
    assert args.architecture == "mdeberta-v3-base" and args.fractions == [0.5, 1.0] and args.requests_per_level == 7
    assert args.max_batch_size == 32 and args.out == Path("bench/load_curve.json")
