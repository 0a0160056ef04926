# kafka-ner-worker: every command installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv lint typecheck kafka-start kafka-stop registry-start registry-stop deploy-tools model bench-decode bench-cpu clean

# The demo: local broker, sample documents, the worker on the shipped CPU model, results printed.
demo: $(STAMP)
	$(BIN)/python tools/demo.py

# The whole suite: unit, decoding parity, integration on the real broker, deployment tools.
test: $(STAMP) deploy-tools
	$(BIN)/ruff check worker tests tools bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check worker tests tools bench

typecheck: $(STAMP)
	$(BIN)/mypy

kafka-start: $(STAMP)
	tools/kafka/kafka-local.sh start

kafka-stop:
	tools/kafka/kafka-local.sh stop

# A Confluent-API schema registry (Apicurio, in memory) for the avro, protobuf and json-schema formats.
registry-start:
	tools/registry/registry-local.sh start

registry-stop:
	tools/registry/registry-local.sh stop

# Helm, crdcheck and an OpenTelemetry Collector (built from the Go module proxy), Prometheus and
# promtool (Debian's package).
deploy-tools: $(STAMP)
	bash tools/install_deploy_tools.sh

# Re-make the shipped demo model (a few minutes on 2 CPU cores).
model: $(STAMP)
	$(BIN)/python tools/train_tiny_ner.py

bench-decode: $(STAMP)
	$(BIN)/python bench/decode_bench.py

# CPU per document on one core: the encode call alone, the path before batch decoding, now, the pipeline.
bench-cpu: $(STAMP)
	$(BIN)/python bench/cpu_bench.py

clean:
	tools/kafka/kafka-local.sh stop || true
	tools/registry/registry-local.sh stop || true
	rm -rf .cache $(VENV)
