# Two commands do all the set-up on a fresh Debian machine (as root, with only Python):
#   make demo   install everything, build a small corpus, mix two voices, separate them
#   make test   install everything, run the test suite
#   make test-fast   the same without the tests marked slow (pytest -m 'not slow')
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install system-deps test test-fast demo clean

$(INSTALLED): pyproject.toml scripts/bootstrap-venv.sh
	bash scripts/bootstrap-venv.sh "$(PYTHON)" "$(VENV)"
	# The CPU build of torch on local disk; a looser spec would download several GB of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(INSTALLED) system-deps

system-deps:
	bash scripts/install-system-deps.sh

test: install
	$(PY) -m pytest

# One torch thread: on 2 shared cores, OpenMP threads that wait for each other while other
# processes run make a tiny model's forward up to 16x slower (23 s for the subset, not 100 s).
test-fast: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow"

demo: install
	$(VENV)/bin/cocktail demo --out demo-output

clean:
	rm -rf $(VENV) demo-output .pytest_cache
