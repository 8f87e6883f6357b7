# Two entry points (see README): `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# This machine takes the local CPU wheel for this pin; on a Linux CUDA machine the same pin pulls the CUDA build.
TORCH ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000
# the Kubernetes API the manifests in deploy/k8s are checked against (schemas shipped by kubernetes-validate)
K8S_VERSION ?= 1.31.0

.PHONY: install serve build-default test lint test-slow report bench peers bench-peers clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

install: $(BIN)/.installed

build-default: install
	$(BIN)/triage build-default --if-missing

serve: build-default
	$(BIN)/triage serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check app models router tests evalsets
	$(BIN)/ruff format --check app models router tests evalsets
	$(BIN)/mypy app models router tests evalsets
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec docker/compose*.yaml
	$(BIN)/kubernetes-validate --strict --quiet --kubernetes-version $(K8S_VERSION) deploy/k8s/*.yaml

test: lint
	$(BIN)/pytest -q

test-slow: install
	$(BIN)/pytest -q -m slow

# the committed reports of the embedded default (encoder, LLM, hybrid, n-gram baseline): tickets people wrote
# (the proxy's test half), then the generated held-out-family and test splits
report: build-default
	$(BIN)/triage evaluate --data evalsets/proxy/test.jsonl --encoder checkpoints/default/encoder \
		--adapter checkpoints/default/adapter --baseline-data data/eurochef --out reports/proxy-test
	$(BIN)/triage evaluate --data data/eurochef/test_heldout.jsonl --encoder checkpoints/default/encoder \
		--adapter checkpoints/default/adapter --out reports/default-heldout
	$(BIN)/triage evaluate --data data/eurochef/test.jsonl --encoder checkpoints/default/encoder \
		--adapter checkpoints/default/adapter --out reports/default

bench: build-default
	$(BIN)/triage bench --architecture mdeberta-v3-base --concurrency 32

# the serving peers of `triage bench --peers` (optional): BentoML and Ray Serve beside triage (the `peers` extra);
# Infinity in a venv of its own, $(PEERS_DIR)/infinity, with this venv's torch and transformers: its server extra pins
# click<8.2 and typer 0.12, which transformers 5's huggingface_hub cannot have, so that extra's other packages are
# listed here instead (Infinity's CLI runs on the newer click and typer)
PEERS_DIR ?= .peers
INFINITY ?= infinity-emb==0.0.78
INFINITY_SERVER := fastapi orjson prometheus-fastapi-instrumentator posthog pydantic "rich>=13,<14" "uvicorn[standard]>=0.32,<0.33"

peers: install
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev,peers]"
	mkdir -p $(PEERS_DIR) && echo '*' > $(PEERS_DIR)/.gitignore
	test -x $(PEERS_DIR)/infinity/bin/python || $(PYTHON) -m venv $(PEERS_DIR)/infinity
	$(PEERS_DIR)/infinity/bin/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(PEERS_DIR)/infinity/bin/python -m pip install -q --disable-pip-version-check "$(INFINITY)" $(INFINITY_SERVER) \
		"transformers==$$($(BIN)/python -c 'import transformers; print(transformers.__version__)')"

bench-peers: peers build-default
	$(BIN)/triage bench --peers --architecture mdeberta-v3-base

clean:
	rm -rf $(VENV) data checkpoints bench .mypy_cache .ruff_cache .pytest_cache
