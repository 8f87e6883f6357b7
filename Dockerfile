# syntax=docker/dockerfile:1
# triage server image: it serves checkpoints mounted at /checkpoints and never trains.
#   GPU:  docker build -t triage . && docker run --gpus all -p 8000:8000 -v "$PWD/checkpoints:/checkpoints:ro" triage
#   CPU:  docker build --build-arg BASE=debian:bookworm-slim \
#           --build-arg TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" -t triage:cpu .
# Install and start live in docker/triage-image.sh, which tests/test_image.py runs too.
ARG BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ARG TORCH=torch==2.13.0
COPY pyproject.toml README.md /src/
COPY app /src/app
COPY models /src/models
COPY router /src/router
COPY docker/triage-image.sh /src/docker/triage-image.sh
RUN TORCH="${TORCH}" TRIAGE_SRC=/src TRIAGE_VENV=/opt/triage/venv /src/docker/triage-image.sh install

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 HF_HOME=/tmp/hf \
    TRIAGE_VENV=/opt/triage/venv TRIAGE_ENCODER_PATH=/checkpoints/default/encoder
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin triage
COPY --from=build /opt/triage/venv /opt/triage/venv
COPY docker/triage-image.sh /usr/local/bin/triage-image.sh
USER 10001
VOLUME ["/checkpoints"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
    CMD ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/ready')"]
ENTRYPOINT ["/usr/local/bin/triage-image.sh", "start"]
