#!/usr/bin/env bash
# The main job, from nothing: set up the environment, write the synthetic motion world,
# run the whole Video-TCAV chain on it, and print the significance table (figure: PNG).
#   shell/demo.sh [OUT_DIR]      (default: work/demo)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/work/demo}
"$repo/shell/setup.sh"
export PATH="${VTCAV_VENV:-$repo/.venv}/bin:$PATH"
start=$(date +%s)
printf '== vt-synth: the motion world (the class is the direction the ball moves)\n' >&2
vt-synth "$out/world" --seed "${SEED:-0}" --train-per-class 30 --test-per-class 15
"$repo/shell/pipeline.sh" "$out/world/labels.jsonl" "$out"
printf 'main job: %s s after set-up\n' "$(( $(date +%s) - start ))" >&2
