# CLIPSelf-D2. The two commands: `make demo` (the miniature paper) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: env demo demo-seg demo-cnn demo-seeds test test-all lint clean

env:
	@bash tools/setup_env.sh

demo: env
	$(PY) tools/miniature_paper.py --output output/demo $(DEMO_ARGS)

# the segmentation part of the miniature paper (panoptic + semantic heads on the demo's towers;
# runs `make demo` first when output/demo is missing)
demo-seg: env
	$(PY) tools/segmentation_paper.py --output output/demo_seg --demo output/demo $(DEMO_ARGS)

# the paper's motivation: dense features of a toy CNN CLIP vs the toy ViT (docs/cnn_vs_vit.md;
# reuses output/demo's world and toy ViT when present)
demo-cnn: env
	$(PY) tools/cnn_vs_vit.py --output output/demo_cnn --demo output/demo $(DEMO_ARGS)

# the miniature's region-recognition and F-ViT stages on 3 world seeds: mean and spread
# (docs/miniature.md §5; each seed's world and toy CLIP cached under output/demo_seeds/seed_N)
demo-seeds: env
	$(PY) tools/demo_seeds.py --output output/demo_seeds $(DEMO_ARGS)

test: env lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: env
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

lint: env
	$(PY) -m flake8 projects tests tools configs datasets train_net.py setup.py
	$(PY) -m isort --check-only --diff projects tests tools datasets train_net.py setup.py
	.venv/bin/lint-imports --no-cache setup.cfg

clean:
	rm -rf output .pytest_cache
