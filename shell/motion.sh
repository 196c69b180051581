#!/usr/bin/env bash
# Is it motion? The Video-TCAV question for one class, with matched temporal controls:
#
#   shell/motion.sh OUT_DIR                                   # the motion world, class "right"
#   WORLD=appearance TARGET=red shell/motion.sh OUT_DIR       # the appearance world (colour decides)
#   LABELS=my/labels.jsonl DETECTIONS=my/dets.jsonl MODEL=... WEIGHTS=... LAYERS=... TARGET=... \
#       OBJECT=... shell/motion.sh OUT_DIR                     # your videos, tracks and model
#
# concepts (the object moving in TARGET videos, its static crop, R random sets)
#   -> twins (frozen, shuffled, reversed: of the concept AND of every random set, the null)
#   -> embed -> cav (concept vs random; concept vs static; every set vs each of its twins)
#   -> score -> stats (the twin table and the motion figure) -> report
# Every step's wall time goes to OUT_DIR/times.tsv (what the twins cost beside the rest).
# Settings from the environment:
#   WORLD        motion or appearance, for the synthetic world made when LABELS is not given (motion)
#   LABELS       labels manifest (default: a synthetic world made in OUT_DIR/world)
#   DETECTIONS   tracks (default: the synthetic world's true boxes, gt.jsonl)
#   MODEL        the explained model   (default: the world's tiny 3D CNN)
#   WEIGHTS      its checkpoint        (default: weights/classifier.pt or weights/appearance_classifier.pt)
#   LAYERS       layers                (default: block1,block2,block3)
#   TARGET       the class             (default: right; red in the appearance world)
#   OBJECT       the tracked class     (default: ball)
#   TWINS        twin kinds            (default: frozen,shuffled,reversed)
#   RANDOM_SETS  R (default 10), CLIPS per set (default 40), SEED (default 0), TITLE of the figures
#   VTCAV_VENV   where the vt-* commands are (default: the repository's .venv)
set -euo pipefail
out=${1:?usage: motion.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${VTCAV_VENV:-$repo/.venv}/bin:$PATH"
WORLD=${WORLD:-motion}
if [ "$WORLD" = appearance ]; then
    default_model=vtcav_common.models.tiny:appearance_c3d default_weights=$repo/weights/appearance_classifier.pt
    default_target=red
else
    default_model=vtcav_common.models.tiny:motion_c3d default_weights=$repo/weights/classifier.pt
    default_target=right
fi
MODEL=${MODEL:-$default_model}
WEIGHTS=${WEIGHTS:-$default_weights}
LAYERS=${LAYERS:-block1,block2,block3}
TARGET=${TARGET:-$default_target}
OBJECT=${OBJECT:-ball}
TWINS=${TWINS:-frozen,shuffled,reversed}
RANDOM_SETS=${RANDOM_SETS:-10}
CLIPS=${CLIPS:-40}
SEED=${SEED:-0}
mkdir -p "$out"
times=$out/times.tsv
printf 'step\tseconds\n' > "$times"
# run STEP COMMAND...: run it, and record its wall time
run() {
    local name=$1 start=$SECONDS
    shift
    printf '\n== %s\n' "$name" >&2
    "$@"
    printf '%s\t%s\n' "$name" $((SECONDS - start)) >> "$times"
}

if [ -z "${LABELS:-}" ]; then
    run synth vt-synth "$out/world" --world "$WORLD" --seed "$SEED" --train-per-class 30 --test-per-class 15 -q
    LABELS=$out/world/labels.jsonl
    DETECTIONS=${DETECTIONS:-$out/world/gt.jsonl}
fi
: "${DETECTIONS:?give DETECTIONS (the tracks vt-detect wrote for your videos) with LABELS}"
concept=${OBJECT}_${TARGET}
static=${OBJECT}_static
common=(--videos "$LABELS" --split train --frames 16 --size 64 --seed "$SEED" -q)
c=$out/concepts.h5
concepts() {
    vt-concepts spatiotemporal "$DETECTIONS" "${common[@]}" --class "$OBJECT" --label "$TARGET" \
        --max-clips "$CLIPS" --name "$concept" -o "$c"
    vt-concepts spatial "$DETECTIONS" "${common[@]}" --class "$OBJECT" --label "$TARGET" \
        --max-clips "$CLIPS" --name "$static" -o "$c" --append
    vt-concepts random "${common[@]}" --exclude-label "$TARGET" --sets "$RANDOM_SETS" --clips-per-set "$CLIPS" \
        -o "$c" --append
}
run concepts concepts
run twins vt-concepts twins "$c" --set "$concept" --set 'random_*' --kind "$TWINS" --seed "$SEED" -q
model=(--model "$MODEL" --weights "$WEIGHTS" --layers "$LAYERS" --seed "$SEED" -q)
run embed vt-embed "${model[@]}" "$c" -o "$out/acts.h5"
run gradients vt-embed "${model[@]}" "$LABELS" --label "$TARGET" --split test --target "$TARGET" -o "$out/grads.h5"
run cav vt-cav "$out/acts.h5" --concept "$concept" --concept "$static" --relative "$concept:$static" --twins \
    --seed "$SEED" -o "$out/cavs.h5" -q
run score vt-score "$out/cavs.h5" "$out/grads.h5" -o "$out/scores.jsonl" -q
run stats vt-stats "$out/scores.jsonl" --plot "$out/tcav.png" --motion-plot "$out/motion.png" \
    --title "${TITLE:-Is it motion?}" -o "$out/stats.jsonl"
run report vt-report "$out/stats.jsonl" --figure "$out/motion.png" --figure "$out/tcav.png" --input "$c" \
    --input "$out/cavs.h5" --title "Is it motion? class $TARGET" -o "$out/report.html" -q
printf '\nthe twin table: %s/stats.jsonl (kind "twin"); figure: %s/motion.png; report: %s/report.html; times: %s\n' \
    "$out" "$out" "$out" "$times" >&2
