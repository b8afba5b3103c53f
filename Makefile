# One-command entry points. Each creates .venv on first use.
#   make test      unit tests + nbval on every notebook, fast mode (what CI runs)
#   make workbook  get CIFAR-10 (or say it is offline), execute all notebooks, write figures/
#   make lab       open JupyterLab in the environment
#   make bench     speed benchmark against torch (writes benchmarks/results.json)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test workbook docs lab bench data strip clean ui-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[test,oracle]"
	touch $(STAMP)

test: $(STAMP)
	WORKBOOK_FAST=1 MPLBACKEND=Agg OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
		$(BIN)/python -m pytest -p no:cacheprovider \
		--nbval-lax --nbval-current-env tests notebooks

# The browser tests alone (tests/ui/: JupyterLab and Notebook 7 in headless chromium; they skip,
# saying why, without chromium + chromium-driver (apt-get) and selenium). make test runs them too.
# UI_SCREENSHOT=docs/panel.png also saves the training panel's picture for the README.
ui-test: $(STAMP)
	WORKBOOK_UI_SCREENSHOT=$(UI_SCREENSHOT) MPLBACKEND=Agg \
		$(BIN)/python -m pytest -p no:cacheprovider -v -rs tests/ui

data: $(STAMP)
	$(BIN)/python -c "from workbook import data; data.fetch_cifar10_or_explain()"

workbook: data
	mkdir -p build/executed figures
	WORKBOOK_PROGRESS=0 $(BIN)/jupyter nbconvert --to notebook --execute \
		--ExecutePreprocessor.timeout=-1 --output-dir build/executed notebooks/*.ipynb
	@echo "Executed notebooks are in build/executed/, figures in figures/."

# README figures and results from a full run on real images, e.g.
#   make docs WORKBOOK_DATA=../shared/cifar10-images
docs:
	test -n "$(WORKBOOK_DATA)" || (echo "set WORKBOOK_DATA=/path/to/image-folder (or CIFAR10_DIR)"; exit 1)
	WORKBOOK_DATA=$(WORKBOOK_DATA) $(MAKE) workbook
	$(BIN)/python tools/make_docs.py

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python benchmarks/speed.py

strip: $(STAMP)
	$(BIN)/python tools/strip_outputs.py notebooks/*.ipynb

clean:
	rm -rf build .pytest_cache
