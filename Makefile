# Two commands for a fresh clone:
#   make demo   set up .venv and restore the bundled example photos into outputs/
#   make test   set up .venv and run the test suite (what CI runs)
# And the CPU training recipe for the default model (~80 min on 2 cores; safe to interrupt and rerun),
# which writes $(RUN)/restorevar-small; it becomes the default once copied to src/restorevar/weights/restorevar-small:
#   make train-default
# On a CUDA machine, the larger recipe of configs/gpu/ (its refiner tune runs on 2 CPU cores in ~52 min; the
# GPU stages before it would take many hours there):
#   make train-default CONFIGS=configs/gpu
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel installs from local disk in seconds; on a GPU machine install a CUDA build of torch first.
TORCH ?= torch==2.13.0

.PHONY: install test lint demo clean train-default train-varformer heldout

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

# ruff: lint and format check (configured in pyproject.toml); `$(VENV)/bin/ruff format .` fixes the format
lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

SMOKE := tests/fixtures/golden
demo: install
	@if $(PY) -c "from restorevar.models.registry import resolve_model; resolve_model(None)" 2>/dev/null; then \
		$(VENV)/bin/restorevar restore examples/*.jpg -o outputs/ --compare --overwrite; \
	else \
		echo "*** SMOKE MODEL: no bundled default model yet, so the demo uses the paper code's tiny"; \
		echo "*** RANDOM-WEIGHT test model. It exercises the whole pipeline; the outputs are NOT restorations."; \
		$(VENV)/bin/restorevar convert $(SMOKE)/restorevar_tiny outputs/smoke-model --refiner-heads 2 \
			--vae $(SMOKE)/vqvae_tiny/state_dict.safetensors && \
		$(VENV)/bin/restorevar restore examples/*.jpg -o outputs/ --compare --overwrite --model outputs/smoke-model; \
	fi

# The default model's recipe: the stages on the photo set, each resumed from its last checkpoint. The blur
# expert's and the mixer's stages are CPU-sized in both recipes, so both use configs/default/ for them.
# Add NPROC=2 to run every stage under torchrun with that many processes (gloo on CPU, nccl on GPU).
PHOTOS ?= data/photos
RUN ?= runs/default
NPROC ?= 1
RV := $(if $(filter 1,$(NPROC)),$(VENV)/bin/restorevar,$(VENV)/bin/torchrun --standalone --nproc_per_node $(NPROC) -m restorevar.cli.main)
CONFIGS ?= configs/default
# Refiner tunes: refiner_tune*.yaml in name order, each starting from the one before.
TUNES = $(sort $(wildcard $(CONFIGS)/refiner_tune*.yaml))
STAGE = $(RV) train $(1) --config $(CONFIGS)/$(1).yaml --data $(PHOTOS) --out $(RUN)/$(1) --resume
train-default: install
	test -f $(PHOTOS)/manifest.json || $(VENV)/bin/restorevar data photos $(PHOTOS)
	$(call STAGE,tokenizer)
	$(call STAGE,transformer) --tokenizer $(RUN)/tokenizer
	$(call STAGE,refiner) --transformer $(RUN)/transformer
	prev=$(RUN)/refiner; for tune in $(TUNES); do name=$$(basename $$tune .yaml); \
		$(RV) train refiner --config $$tune --data $(PHOTOS) --out $(RUN)/$$name --transformer $$prev --resume \
		|| exit 1; prev=$(RUN)/$$name; done
	$(call STAGE,decoder) --refiner $(RUN)/$(basename $(notdir $(lastword refiner $(TUNES))))
	$(RV) train blur_expert --config configs/default/blur_expert.yaml --data $(PHOTOS) --out $(RUN)/blur_expert \
		--decoder $(RUN)/decoder --resume
	$(RV) train mixer --config configs/default/mixer.yaml --data $(PHOTOS) --out $(RUN)/mixer \
		--expert $(RUN)/blur_expert --resume
	$(PY) scripts/export_default.py $(RUN)/mixer $(RUN)/restorevar-small $(PHOTOS)

# VarFormer on the bundled restorevar-small's frozen VAR (configs/varformer/): the adapter, then the prior-guided
# U-Net; writes $(VF_RUN)/varformer-small (fp16). Safe to interrupt and rerun.
VF_RUN ?= runs/varformer
train-varformer: install
	test -f $(PHOTOS)/manifest.json || $(VENV)/bin/restorevar data photos $(PHOTOS)
	$(RV) train varformer_adapter --prior restorevar-small --config configs/varformer/varformer_adapter.yaml \
		--data $(PHOTOS) --out $(VF_RUN)/adapter --resume
	$(RV) train varformer --adapter $(VF_RUN)/adapter --config configs/varformer/varformer.yaml \
		--data $(PHOTOS) --out $(VF_RUN)/backbone --resume
	$(PY) scripts/export_default.py $(VF_RUN)/backbone $(VF_RUN)/varformer-small $(PHOTOS)

# Held-out quality of that model (docs/design-notes.md): PSNR/SSIM/NIQE vs input and classical baselines.
heldout: install
	$(PY) benchmarks/heldout.py --model $(RUN)/restorevar-small --photos $(PHOTOS) \
		--out benchmarks/results/heldout-restorevar-small

clean:
	rm -rf $(VENV) outputs build *.egg-info
