# ovdistill: the README's two commands are `make demo` and `make test`.
# Both set up the pinned environment first (env/bootstrap.py: the heavy environment is cached outside
# the checkout and shared by clones while env/requirements.txt and env/compat.py's pins are unchanged;
# .venv is this checkout's light environment on top of it), so they are safe to run repeatedly.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo export test test-fast lint bench clean-env help

help:
	@echo "make demo   - set up if needed, then run the toy-world ViLD distillation demo (seed 0, next to the 3-seed range)"
	@echo "make export - export make demo's ViLD model (TorchScript, ONNX, model card) and draw a custom vocabulary"
	@echo "make test   - set up if needed, then run the whole test suite (slow tests included)"
	@echo "make test-fast - unit tests only (-m 'not slow')"
	@echo "make lint   - ruff check and ruff format --check (configured in pyproject.toml)"
	@echo "make bench  - run every benchmark's quick mode (benchmarks/README.md; JSON on each last line)"
	@echo "make setup  - only build/reuse the shared environment and this checkout's .venv"

setup:
	@$(PYTHON) env/bootstrap.py

demo: setup
	@$(PY) tools/toy_tables.py --seeds 0 --methods vild_text vild

# After `make demo`: export its ViLD model and draw one toy validation image with a vocabulary it never saw.
VILD_RUN ?= output/toy/vild/seed0
VOCABULARY ?= circle,star,red heart
export: setup
	@test -f $(VILD_RUN)/model_final.pth || { echo "$(VILD_RUN)/model_final.pth missing: run make demo first"; exit 1; }
	@$(PY) tools/export_model.py --config toy/vild.yaml --weights $(VILD_RUN)/model_final.pth --output $(VILD_RUN)/export
	@$(PY) tools/demo.py --config toy/vild.yaml --weights $(VILD_RUN)/export/model.onnx --vocabulary "$(VOCABULARY)" \
		--output $(VILD_RUN)/demo --input "$$($(PY) -c "from distill.toy import ensure_toy_world; \
		print(ensure_toy_world(progress=False).image_dir('val') / '000001.png')")"

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .

# benchmarks/_*.py are shared helpers, not benchmarks.
bench: setup
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean-env:
	@rm -rf "$$($(PYTHON) env/bootstrap.py --print-env)" $(VENV)
