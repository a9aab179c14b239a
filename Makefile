# pneumoscan: `make demo` and `make test` work on a fresh machine (Python 3.11 and pip on PATH).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_out
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: install demo test bench clean browser

## pneumoscan with its dev extras (pytest, playwright, ...): what `make test` and `make bench` need.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## pneumoscan alone, as `pip install .` gives it: what the demo runs (no test tools).
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

install: $(STAMP)

## Train a small model on the bundled sample, evaluate it, predict, and say where everything is.
demo: $(RUN_STAMP)
	rm -rf $(DEMO_OUT)
	$(BIN)/pneumoscan audit sample/chest_xray --json $(DEMO_OUT)/audit.json
	$(BIN)/pneumoscan train --data sample/chest_xray --out $(DEMO_OUT)/run --model resnet10 --epochs 30 --patience 10 --val-fraction 0.2 --cache-dir $(DEMO_OUT)/cache
	$(BIN)/pneumoscan fit-guard --model $(DEMO_OUT)/run --data sample/chest_xray --cache-dir $(DEMO_OUT)/cache
	$(BIN)/pneumoscan evaluate --model $(DEMO_OUT)/run --data sample/chest_xray --json $(DEMO_OUT)/eval.json --n-boot 200
	@# exit code 1: some film got no prediction (named on stderr; e.g. refused by the guard), the rest are in the CSV
	$(BIN)/pneumoscan predict --model $(DEMO_OUT)/run sample/chest_xray/test/PNEUMONIA --csv > $(DEMO_OUT)/predictions.csv \
		|| [ $$? -eq 1 ]
	$(BIN)/pneumoscan report $(DEMO_OUT)/run --data sample/chest_xray --out $(DEMO_OUT)/report.html --n-boot 200
	@echo
	@echo "demo results in $(DEMO_OUT)/:"
	@echo "  run/          model.safetensors (+ .ood guard), history.csv, config.json, split.json"
	@echo "  eval.json     test metrics of the sample with 95% intervals"
	@echo "  predictions.csv, audit.json"
	@echo "  report.html   open it in a browser (figures also in report_files/)"
	@echo "the shipped model: $(BIN)/pneumoscan predict sample/chest_xray/test/NORMAL"
	@echo "  (its guard refuses 2 of those 30 real films, 2 of the 3 it refuses in the whole test split: exit code 1)"

## Chromium for the browser tests (Debian package), installed only when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

## The suite on parallel pytest-xdist workers, one per core (at most 4: a worker reached 1.5 GB of memory); TEST_WORKERS=0
## runs it in one process.
TEST_WORKERS ?= auto
test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4

bench: $(STAMP)
	$(BIN)/python bench/train_full.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
