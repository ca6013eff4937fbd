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

demo: install
	$(VENV)/bin/restorevar restore examples/*.jpg -o outputs/ --compare --overwrite

clean:
	rm -rf $(VENV) outputs build *.egg-info
