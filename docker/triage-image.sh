#!/usr/bin/env bash
# The image's two steps in one script: the Dockerfile runs `install` while building and `start` as its entrypoint;
# tests/test_image.py runs both in a fresh venv, `start` as a non-root user on a read-only checkpoint.
#
#   TRIAGE_VENV=/opt/triage/venv TRIAGE_SRC=. TORCH=torch==2.13.0 [PYTHON=python3] docker/triage-image.sh install
#   TRIAGE_ENCODER_PATH=/checkpoints/default/encoder docker/triage-image.sh start
set -euo pipefail

VENV=${TRIAGE_VENV:-/opt/triage/venv}
case "${1:-}" in
  install)
    SRC=${TRIAGE_SRC:-$(cd "$(dirname "$0")/.." && pwd)}
    "${PYTHON:-python3}" -m venv "$VENV"   # the image's python3; another user must be able to run it
    # TORCH may carry pip options (e.g. "torch==2.13.0 --index-url <CPU wheels>"): split on purpose
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --no-cache-dir --disable-pip-version-check -q ${TORCH:-torch==2.13.0}
    "$VENV/bin/pip" install --no-cache-dir --disable-pip-version-check -q "$SRC"
    ;;
  start)
    CKPT=${TRIAGE_ENCODER_PATH:-/checkpoints/default/encoder}
    if [ ! -r "$CKPT/triage_manifest.json" ]; then
      echo "triage: no checkpoint at $CKPT; mount a checkpoints folder at /checkpoints (see README, Docker)" >&2
      exit 2
    fi
    export TRIAGE_ENCODER_PATH=$CKPT
    exec "$VENV/bin/triage" --log-json serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}"
    ;;
  *)
    echo "usage: $0 install|start" >&2
    exit 2
    ;;
esac
