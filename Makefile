# The two commands: `make demo` (the main job on the embedded default) and `make test`
# (the whole suite: lint, types, proofs, tests, notebooks). Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HYPOTHESIS_PROFILE ?= ci

.PHONY: install demo test lint typecheck proofs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel. A looser pin pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[empirical,proofs,pepit,verify,dev]"
	# Coq checks the calculus lemmas of proofs/coq/ (python -m proofs fails without coqc)
	command -v coqc >/dev/null || (apt-get update -qq && apt-get install -y -qq coq) \
		|| { echo "error: Coq (coqc) is required by python -m proofs: apt-get install coq failed" >&2; exit 1; }
	command -v coqc >/dev/null || { echo "error: coqc not found after installing Coq" >&2; exit 1; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hfta verify --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check theory proofs empirical tests benchmarks
	$(BIN)/mypy

proofs: $(STAMP)
	$(BIN)/python -m proofs

test: $(STAMP) lint
	$(BIN)/python -m proofs
	$(BIN)/python -m pytest --nbmake tests notebooks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
