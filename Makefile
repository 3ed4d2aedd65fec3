# Two commands for a newcomer (see README.md):
#   make demo   - install everything, start LocalStack, run the demo
#   make test   - install everything, start LocalStack, run lint, type checks and the whole test suite
#
# Nothing is reinstalled on a second run: the project venv is rebuilt only when pyproject.toml
# changes, and LocalStack's venv only when localstack/requirements.lock changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCALSTACK_PORT ?= 4566

.PHONY: install install-check localstack localstack-stop demo test unit lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[install] installing the toolkit and its dev tools into $(VENV)"
	@# A current pip first: older ones backtrack for minutes over the boto3/aiobotocore releases.
	@{ $(PY) -m pip install --disable-pip-version-check -q --upgrade 'pip>=25.1' \
		&& $(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'; } > $(VENV)/install.log 2>&1 \
		|| { tail -40 $(VENV)/install.log; echo "[install] failed: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

localstack: install
	@$(PY) localstack/ctl.py start --port $(LOCALSTACK_PORT)

localstack-stop:
	@$(PYTHON) localstack/ctl.py stop --port $(LOCALSTACK_PORT)

# The demo reaches LocalStack through standard AWS configuration only (see examples/with-localstack).
demo: localstack
	@LOCALSTACK_PORT=$(LOCALSTACK_PORT) examples/with-localstack python -m examples.demo.pipeline $(DEMO_ARGS)

lint: install
	@$(VENV)/bin/ruff check kpl kcl agent tests examples bench localstack .ci
	@$(VENV)/bin/mypy

# Can an application install the toolkit beside the boto3 it already has?  Resolves (pip --dry-run, nothing
# installed, needs the package index) the runtime dependencies of pyproject.toml together with boto3 1.35.x,
# and together with the newest boto3 that the newest aiobotocore release allows; fails when either does not
# resolve or when our aiobotocore range excludes the newest aiobotocore.  About 10 s.  See .ci/install_check.py.
install-check: install
	@$(PY) .ci/install_check.py

test: lint install-check localstack
	@LOCALSTACK_PORT=$(LOCALSTACK_PORT) $(PY) -m pytest

unit: install
	@$(PY) -m pytest -m unit

# Benchmarks print tables; they are not part of `make test`.  BENCH_ARGS=--quick for a smoke run.
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	@echo "[bench] installing the Python peers the benchmarks compare against (the bench extra)"
	@$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,bench]' > $(VENV)/bench-install.log 2>&1 \
		|| { tail -40 $(VENV)/bench-install.log; echo "[bench] failed: see $(VENV)/bench-install.log"; exit 1; }
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@$(PY) -m bench.sink_selftest --quick
	@failed=""; for script in bench/*_bench.py; do \
		module=bench.$$(basename $$script .py); \
		echo; echo "[bench] python -m $$module $(BENCH_ARGS)"; \
		LOCALSTACK_PORT=$(LOCALSTACK_PORT) $(PY) -m $$module $(BENCH_ARGS) || failed="$$failed $$module"; \
	done; \
	if [ -n "$$failed" ]; then echo "[bench] failed:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
