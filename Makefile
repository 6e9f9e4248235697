# The two commands README.md opens with: `make run` and `make test`. Both set up .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test system-deps lint bench bench-serve perf-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch pinned to the CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[diffusion,onnx,openvino,dev,ray]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/swiftshot serve

# Debian packages the tests run as real processes (redis-server, nginx, promtool, chromium):
# installed through apt-get when root, else make stops at once with the command to run.
system-deps:
	@.ci/system-deps

# SWIFTSHOT_REQUIRE_SERVICES=1: a test whose real service is missing fails instead of skipping.
test: $(STAMP) system-deps
	SWIFTSHOT_REQUIRE_SERVICES=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

perf-check: $(STAMP)
	$(BIN)/swiftshot bench check --quick

# The full serving benchmark against the naive baseline (a few minutes; docs/PERFORMANCE.md).
bench-serve: $(STAMP)
	$(BIN)/swiftshot bench serve --compare naive

clean:
	rm -rf $(VENV) var .pytest_cache
