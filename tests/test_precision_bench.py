"""``triage bench-precision`` (app/jobs/precision.py), run for real on the tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main


def test_precision_bench_measures_every_variant_against_stock_float32(
    encoder_dir: Path, dataset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "precision.json"
    args = ["--encoder", str(encoder_dir), "--data", str(dataset_dir), "--repeats", "3", "--batch-size", "8"]
    assert main(["bench-precision", *args, "--batches", "2", "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    rows = {r["variant"]: r for r in result["variants"]}
    assert list(rows) == ["float32 eager (stock)", "float32", "bfloat16", "int8"]
    stock, cached = rows["float32 eager (stock)"], rows["float32"]
    # cached relative positions change nothing in fp32: same answers on the sample and on the test split
    assert stock["cost_f1_points"] == cached["cost_f1_points"] == 0.0
    assert result["test_split"]["size"] > 0 and stock["test_f1_micro"] == cached["test_f1_micro"] > 0.1
    for row in rows.values():
        assert row["batch1_speedup"] == round(stock["batch1_ms"] / row["batch1_ms"], 2)
        assert row["throughput_speedup"] == round(row["batch8_tickets_per_s"] / stock["batch8_tickets_per_s"], 2)
        assert row["test_f1_delta_points"] == round(100 * (row["test_f1_micro"] - stock["test_f1_micro"]), 2)
        assert 0.0 <= row["cost_f1_points"] <= 100.0
    auto = result["auto"]
    assert auto["served"] in (auto["candidate"], "float32")
    assert (auto["served"] == auto["candidate"]) == (rows[auto["candidate"]]["cost_f1_points"] <= 0.5)
    printed = capsys.readouterr().out
    assert "float32 eager (stock)" in printed and f"-> {auto['served']}" in printed
