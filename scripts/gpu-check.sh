#!/usr/bin/env bash
# The production path on a real CUDA GPU, end to end, in one report: generated data, mDeBERTa-v3-base fine-tuned
# in bf16, a short QLoRA adapter on gpt-oss-20b (4-bit NF4 experts), both served with the LLM loaded lazily, then
# `triage bench` and `triage evaluate`. Peak GPU memory per stage comes from nvidia-smi, sampled every 0.5 s.
#
#   scripts/gpu-check.sh                 # everything, into gpu-check/ (about 1-2 h on an RTX 4090, ~60 GB download)
#   N=1000 TRAIN=200 OUT=/tmp/gc scripts/gpu-check.sh
#
# Needs: a CUDA build of torch, the project installed (`make install` with a CUDA torch), nvidia-smi, and the Hugging
# Face hub reachable (or both models in its cache). It stops at the first failing stage; report.md says which.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-gpu-check}
N=${N:-2000}            # generated tickets (train + validation + test)
TRAIN=${TRAIN:-400}     # tickets the short QLoRA run trains on
EVAL=${EVAL:-200}       # tickets per split the adapter and `evaluate` score
PORT=${PORT:-8011}
TRIAGE=${TRIAGE:-.venv/bin/triage}
PY=${PY:-.venv/bin/python}

command -v nvidia-smi >/dev/null || { echo "gpu-check: nvidia-smi not found: this needs a CUDA GPU" >&2; exit 2; }
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "gpu-check: torch sees no CUDA GPU (a CPU build of torch?); install a CUDA build first" >&2; exit 2; }

mkdir -p "$OUT"
REPORT="$OUT/report.md"
GPU_NAME=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)
{
  echo "# triage GPU check"
  echo
  echo "GPU: $GPU_NAME; torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)');" \
       "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "| stage | seconds | peak GPU memory (MiB, nvidia-smi) | result |"
  echo "|---|---|---|---|"
} > "$REPORT"

# stage NAME COMMAND...: run it, sample the GPU's used memory meanwhile, append a row to the report
stage() {
  local name=$1; shift
  local samples="$OUT/$name.mem" start rc
  : > "$samples"
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1 >> "$samples"
      sleep 0.5; done ) &
  local sampler=$!
  start=$(date +%s)
  echo "== $name: $*"
  set +e; "$@" > "$OUT/$name.log" 2>&1; rc=$?; set -e
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  local peak; peak=$(sort -n "$samples" | tail -1)
  echo "| $name | $(( $(date +%s) - start )) | ${peak:-?} | $([ $rc = 0 ] && echo ok || echo "FAILED (rc $rc, see $name.log)") |" >> "$REPORT"
  if [ $rc != 0 ]; then tail -20 "$OUT/$name.log" >&2; echo "gpu-check: stage $name failed" >&2; exit $rc; fi
}

serve_and_wait() {  # serve the trained pair with the LLM loaded lazily, then wait for /ready
  TRIAGE_ENCODER_PATH="$OUT/checkpoints/encoder" TRIAGE_LLM_ADAPTER_PATH="$OUT/checkpoints/adapter" \
    "$TRIAGE" serve --port "$PORT" > "$OUT/serve.log" 2>&1 &
  echo $! > "$OUT/serve.pid"
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && return 0
    kill -0 "$(cat "$OUT/serve.pid")" 2>/dev/null || { tail -20 "$OUT/serve.log"; return 1; }
    sleep 1
  done
  return 1
}

escalate_once() {  # force one escalation, so the lazily loaded 20B tier loads and answers
  curl -sf -X POST "http://127.0.0.1:$PORT/classify" -H 'content-type: application/json' \
    -d '{"text": "Ich wurde zweimal belastet und mein Konto ist gesperrt, bitte sofort helfen!", "escalation": "force"}'
  echo
  curl -sf "http://127.0.0.1:$PORT/info"
}

stage doctor "$TRIAGE" doctor --json "$OUT/doctor.json"
stage generate "$TRIAGE" generate-data --out "$OUT/data" --n "$N" --quiet
stage train-encoder "$TRIAGE" train-encoder --base-model microsoft/mdeberta-v3-base --data "$OUT/data" \
  --out "$OUT/checkpoints/encoder" --epochs 3 --device cuda --quiet
stage train-adapter "$TRIAGE" train-adapter --base-model openai/gpt-oss-20b --data "$OUT/data" \
  --out "$OUT/checkpoints/adapter" --epochs 1 --max-train-examples "$TRAIN" --max-eval-examples "$EVAL" \
  --device cuda --quiet
stage serve serve_and_wait
stage escalate escalate_once
kill "$(cat "$OUT/serve.pid")" 2>/dev/null || true; wait 2>/dev/null || true
stage bench "$TRIAGE" bench --encoder "$OUT/checkpoints/encoder" --data "$OUT/data" --concurrency 32 \
  --dtype bfloat16 --out "$OUT/bench.json" --quiet
stage evaluate "$TRIAGE" evaluate --data "$OUT/data/test.jsonl" --encoder "$OUT/checkpoints/encoder" \
  --adapter "$OUT/checkpoints/adapter" --out "$OUT/evaluate"
stage gpu-tests "$PY" -m pytest -q -m gpu -p no:cacheprovider

{
  echo
  echo "Published figures on this task (RTX 4090): mDeBERTa-v3-base 4.3 ms/ticket, 235 tickets/s, F1 micro 0.810;"
  echo "GPT-OSS-20B + LoRA (4-bit) 740 ms/ticket, F1 micro 0.802. Expected here: the serving and training peaks"
  echo "below the plan in doctor.json (about 20 GiB each); bench and evaluate figures are in bench.json and evaluate/."
} >> "$REPORT"
echo "gpu-check: report in $REPORT"
cat "$REPORT"
