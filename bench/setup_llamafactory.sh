#!/usr/bin/env bash
# LLaMA-Factory 0.9.5 in its own virtual environment (.venv-lf), for bench/train_bench.py --contenders ...,LF.
#
# Its own venv because its pins conflict with ours (transformers <= 5.6, peft 0.18, trl <= 0.24,
# accelerate <= 1.11, datasets <= 4.0). What is left out, and why:
# - torch: the same build as ours (on a CPU machine the CPU build that lies on disk), so both sides run
#   the same kernels;
# - torchvision, torchdata, av, gradio: LF's text SFT path does not import them, and PyPI's torchvision
#   does not load beside a CPU-only torch;
# - torchaudio: LF imports it at module level (data/mm_plugin.py) but uses it only for audio. PyPI's
#   build cannot load its native libraries beside a CPU-only torch, so it is installed without its
#   dependencies and those libraries are removed: torchaudio then imports in its pure-Python mode
#   (it looks for torchaudio/lib/*.so and runs without them when there are none), enough for text SFT.
# Idempotent: a stamp file skips a finished install. Usage: bash bench/setup_llamafactory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LF_VENV:-.venv-lf}
STAMP=$VENV/.installed-0.9.5
[ -f "$STAMP" ] && { echo "[lf] $VENV ready"; exit 0; }
PYTHON=${PYTHON:-python3}
$PYTHON -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $PIP install -q "${TORCH_SPEC:-torch>=2.6,<2.15}"
else
    $PIP install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
$PIP install -q --no-deps llamafactory==0.9.5 "torchaudio==${TORCHAUDIO_VERSION:-2.11.1}"
rm -f "$VENV"/lib/python*/site-packages/torchaudio/lib/*.so
# LF 0.9.5's own requirements (its METADATA), less the packages named above.
$PIP install -q "accelerate>=1.3.0,<=1.11.0" "datasets>=2.16.0,<=4.0.0" einops fastapi fire hf-transfer \
    "matplotlib>=3.7.0" modelscope numpy omegaconf packaging pandas "peft>=0.18.0,<=0.18.1" protobuf pydantic \
    pyyaml safetensors scipy sentencepiece sse-starlette tiktoken \
    "transformers>=4.55.0,<=5.6.0,!=4.52.0,!=4.57.0" "trl>=0.18.0,<=0.24.0" "tyro<0.9.0" uvicorn
$VENV/bin/python -c "import llamafactory.train.tuner, torch; print('[lf] llamafactory imports; torch', torch.__version__)"
touch "$STAMP"
