#!/usr/bin/env bash
# `make demo`: the main job on the embedded default model (SmolLM2-135M-Instruct), offline:
# check the identity data, show what is trained, then teach the model its new name with LoRA and
# compare before/after (scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
TF=.venv/bin/tuneforge
CONFIG=examples/identity_lora.yaml
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error

step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }

step "1/4 the prepared default model"
$TF models list

step "2/4 check the data: formats, errors, duplicates, lengths, placeholders ($CONFIG)"
$TF data check "$CONFIG"

step "3/4 what training will see: the template and the trained span (highlighted)"
$TF data inspect "$CONFIG" -n 1

step "4/4 before -> train -> after"
.venv/bin/python scripts/demo.py
