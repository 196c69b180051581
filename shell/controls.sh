#!/usr/bin/env bash
# Sanity controls of the demo (Adebayo et al. 2018, for TCAV): the same chain under randomised
# models and gradients, and vt-stats saying which verdicts also appear under a control.
#
#   shell/controls.sh [OUT_DIR]       (default: work/demo; runs shell/demo.sh there first if needed)
#
# For each control C, both vt-embed runs of the chain (concept clips; the target's inputs) get
# --control C, then vt-cav and vt-score as in shell/pipeline.sh, into OUT_DIR/controls/C/.
# Then: vt-stats OUT_DIR/scores.jsonl --control ... (stats_controls.jsonl, the table on stderr)
# and vt-report (report_controls.html). A control already scored is not run again.
# Settings from the environment (the others as in shell/pipeline.sh):
#   CONTROLS   the controls (default: reinit cascade:block4 cascade:block3 permute-grads permute-labels)
#   SEED       seed of the randomisation (default: 0)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/work/demo}
export PATH="${VTCAV_VENV:-$repo/.venv}/bin:$PATH"
MODEL=${MODEL:-vtcav_common.models.tiny:motion_c3d}
WEIGHTS=${WEIGHTS:-$repo/weights/classifier.pt}
LAYERS=${LAYERS:-block1,block2,block3}
TARGET=${TARGET:-right}
OBJECT=${OBJECT:-ball}
SEED=${SEED:-0}
CONTROLS=${CONTROLS:-reinit cascade:block4 cascade:block3 permute-grads permute-labels}
step() { printf '\n== %s\n' "$*" >&2; }

if [ ! -f "$out/scores.jsonl" ]; then
    "$repo/shell/demo.sh" "$out"
fi
labels=$out/world/labels.jsonl
model=(--model "$MODEL" --weights "$WEIGHTS" --layers "$LAYERS" --seed "$SEED")
control_scores=()
for control in $CONTROLS; do
    dir=$out/controls/${control//:/_}
    control_scores+=(--control "$dir/scores.jsonl")
    [ -f "$dir/scores.jsonl" ] && continue
    step "control $control: vt-embed (both runs), vt-cav, vt-score"
    mkdir -p "$dir"
    vt-embed "${model[@]}" --control "$control" "$out/concepts.h5" -o "$dir/acts.h5"
    vt-embed "${model[@]}" --control "$control" "$labels" --label "$TARGET" --split test --target "$TARGET" \
        -o "$dir/grads.h5"
    vt-cav "$dir/acts.h5" --relative "${OBJECT}_${TARGET}:${OBJECT}_static" --seed "$SEED" -o "$dir/cavs.h5"
    vt-score "$dir/cavs.h5" "$dir/grads.h5" -o "$dir/scores.jsonl"
    rm -f "$dir/acts.h5"    # the largest file; the CAVs and scores keep its provenance and run id
done

step "vt-stats: the verdicts of the trained model beside the controls'"
vt-stats "$out/scores.jsonl" "${control_scores[@]}" --plot "$out/tcav_controls.png" \
    --title "vtcav demo (with controls)" -o "$out/stats_controls.jsonl"
vt-report "$out/stats_controls.jsonl" --figure "$out/tcav_controls.png" --input "$out/cavs.h5" \
    -o "$out/report_controls.html" --title "vtcav demo: verdicts and sanity controls"
printf '\nresults: %s/stats_controls.jsonl, report: %s/report_controls.html\n' "$out" "$out" >&2
