import json
from pathlib import Path

from app.jobs.bench import BenchConfig, run_bench


def test_bench_measures_raw_batched_and_unbatched_in_one_run(
    tmp_path: Path, encoder_dir: Path, dataset_dir: Path
) -> None:
    out = tmp_path / "bench.json"
    config = BenchConfig(
        encoder=encoder_dir, data=dataset_dir, concurrency=8, requests=48, raw_batch_sizes=(1, 8), out=out
    )
    result = run_bench(config, progress=False)
    saved = json.loads(out.read_text())
    assert saved["ratios"] == result["ratios"]
    raw, batched, unbatched = saved["raw"], saved["served_batched"], saved["served_unbatched"]
    assert set(raw["per_batch_size"]) == {"1", "8"}
    assert raw["tickets_per_s"] == max(raw["per_batch_size"].values())
    assert raw["tickets_per_s"] == raw["per_batch_size"][str(raw["best_batch_size"])]
    assert raw["planned"]["window"] == 32 and raw["planned"]["overhead_tokens"] > 0
    assert batched["failures"] == {} and unbatched["failures"] == {}
    assert saved["ratios"]["served_over_raw"] == round(batched["tickets_per_s"] / raw["tickets_per_s"], 3)
    planned = raw["planned"]["tickets_per_s"]
    assert saved["ratios"]["served_over_raw_planned"] == round(batched["tickets_per_s"] / planned, 3)
    assert unbatched["mean_batch_size"] == 1.0  # one forward pass per request
    assert batched["p50_ms"] <= batched["p99_ms"]
    assert out.with_suffix(".png").stat().st_size > 1000
