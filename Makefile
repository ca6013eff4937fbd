# Two commands for a fresh clone:
#   make demo   set up .venv and restore the bundled example photos into outputs/
#   make test   set up .venv and run the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel installs from local disk in seconds; on a GPU machine install a CUDA build of torch first.
TORCH ?= torch==2.13.0

.PHONY: install test demo clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

SMOKE := tests/fixtures/golden
demo: install
	@if $(PY) -c "from restorevar.presets import resolve_model; resolve_model(None)" 2>/dev/null; then \
		$(VENV)/bin/restorevar restore examples/*.jpg -o outputs/ --compare --overwrite; \
	else \
		echo "*** SMOKE MODEL: no bundled default model yet, so the demo uses the paper code's tiny"; \
		echo "*** RANDOM-WEIGHT test model. It exercises the whole pipeline; the outputs are NOT restorations."; \
		$(VENV)/bin/restorevar convert $(SMOKE)/restorevar_tiny outputs/smoke-model --refiner-heads 2 \
			--vae $(SMOKE)/vqvae_tiny/state_dict.safetensors && \
		$(VENV)/bin/restorevar restore examples/*.jpg -o outputs/ --compare --overwrite --model outputs/smoke-model; \
	fi

clean:
	rm -rf $(VENV) outputs build *.egg-info
