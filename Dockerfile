# triage server image. On a CUDA host: docker build -t triage . && docker run --gpus all -p 8000:8000 triage
# The PyPI torch wheel for Linux x86_64 carries CUDA; it also runs on CPU-only hosts.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HOME=/models/hf
WORKDIR /srv/triage

ARG TORCH=torch==2.13.0
RUN pip install "${TORCH}"

COPY pyproject.toml README.md ./
COPY app app
COPY models models
COPY router router
RUN pip install .

# Build the embedded tiny default at image build time, so the container serves at once.
RUN triage build-default --quiet

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/ready')"
CMD ["triage", "serve", "--host", "0.0.0.0", "--port", "8000"]
