#!/usr/bin/env bash
# Idempotent environment set-up for CLIPSelf-D2 (called by `make demo`, `make test`, `make lint`).
#
# Creates a virtual environment outside the clone, keyed by a hash of the requirement files and of
# this script, installs the dependency set of ../shared/ENV.md (see README "Installation"), installs
# the project in editable mode and links the environment to ./.venv.  A second run with the same
# requirements takes a few seconds.
#
# Environment variables:
#   PYTHON               interpreter used to create the venv (default: python3, must be 3.10+)
#   CLIPSELF_CACHE       where environments are cached (default: ~/.cache/clipself-d2)
#   CLIPSELF_VENV        use exactly this venv path instead of the hashed one
#   CLIPSELF_SYSTEM_SITE=1  create the venv with --system-site-packages, so that a detectron2 (or
#                        torch) already installed in the base interpreter is kept
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
CACHE=${CLIPSELF_CACHE:-$HOME/.cache/clipself-d2}
KEY=$(cat "$ROOT/requirements.txt" "$ROOT/tools/setup_env.sh" | sha256sum | cut -c1-16)
VENV=${CLIPSELF_VENV:-$CACHE/venv-$KEY}
D2_VERSION=0.7.2

log() { echo "[setup_env] $*" >&2; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # two concurrent set-ups (e.g. two CI runs) wait for each other

if [ ! -f "$VENV/.complete" ]; then
  start=$(date +%s)
  log "creating $VENV (first run: installs torch, detectron2, open_clip; a few minutes)"
  rm -rf "$VENV"
  if [ "${CLIPSELF_SYSTEM_SITE:-0}" = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
  if "$VENV/bin/python" -c "import detectron2" 2>/dev/null; then
    log "keeping the detectron2 that is already importable"
  else
    # No official detectron2 on PyPI. sal-detectron2 redistributes FAIR detectron2 as a wheel tagged
    # cp310 whose only compiled part (_C) is optional; re-tag it as pure Python and install it.
    tmp=$(mktemp -d)
    "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --python-version 3.10 --implementation cp -d "$tmp" \
      "sal-detectron2==$D2_VERSION"
    whl=$(ls "$tmp"/*.whl | head -n 1)
    cp "$whl" "$tmp/sal_detectron2-$D2_VERSION-py3-none-any.whl"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      "$tmp/sal_detectron2-$D2_VERSION-py3-none-any.whl" -r "$ROOT/requirements.txt"
    rm -rf "$tmp"
  fi
  "$VENV/bin/python" -c "import torch, torchvision, detectron2, open_clip, fvcore, pycocotools, lvis, panopticapi, hydra, transformers"
  touch "$VENV/.complete"
  log "environment ready in $(( $(date +%s) - start )) s"
fi

# The project itself, editable, pointing at this clone (cheap to redo when another clone used it).
if ! "$VENV/bin/python" - "$ROOT" <<'PY' 2>/dev/null
import os, sys
import clipself
root = os.path.realpath(sys.argv[1])
sys.exit(0 if os.path.realpath(clipself.__file__).startswith(root + os.sep) else 1)
PY
then
  log "installing the project in editable mode from $ROOT"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation -e "$ROOT"
fi
ln -sfn "$VENV" "$ROOT/.venv"
