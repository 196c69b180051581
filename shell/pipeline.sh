#!/usr/bin/env bash
# The Video-TCAV chain, one command per step, on a labelled set of videos:
#
#   shell/pipeline.sh LABELS.jsonl OUT_DIR
#   SHARDS=2 shell/pipeline.sh LABELS.jsonl OUT_DIR     # detect and embed as 2 shards side by side
#
# detect -> concepts (the ball moving right / left, its static crop, random sets)
#        -> embed (activations; gradients of the target class) -> cav -> score -> stats
# Every step reads the files the step before wrote, so any step can be re-run alone
# (see shell/Makefile for the same chain with make, shell/slurm/ for SLURM job arrays).
# Settings come from the environment:
#   DETECTOR     ultralytics detector weights    (default: weights/detector.pt)
#   MODEL        the explained model             (default: vtcav_common.models.tiny:motion_c3d)
#   WEIGHTS      its checkpoint                  (default: weights/classifier.pt)
#   LAYERS       layers to explain               (default: block1,block2,block3)
#   TARGET       the class explained             (default: right)
#   OTHER        the other class's concept       (default: left)
#   OBJECT       the detector class of concepts  (default: ball)
#   RANDOM_SETS  random sets R                   (default: 10)
#   CLIPS        clips per concept / random set  (default: 40)
#   SEED         seed of every random choice     (default: 0)
#   SHARDS       run vt-detect and vt-embed as N shards at once, merged by vt-merge (default: 1);
#                with GNU parallel when installed (JOBS at a time, default SHARDS), else xargs -P
#   VTCAV_VENV   where the vt-* commands are     (default: the repository's .venv; no activation needed)
set -euo pipefail
labels=${1:?usage: pipeline.sh LABELS.jsonl OUT_DIR}
out=${2:?usage: pipeline.sh LABELS.jsonl OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH="${VTCAV_VENV:-$repo/.venv}/bin:$PATH"
DETECTOR=${DETECTOR:-$repo/weights/detector.pt}
MODEL=${MODEL:-vtcav_common.models.tiny:motion_c3d}
WEIGHTS=${WEIGHTS:-$repo/weights/classifier.pt}
LAYERS=${LAYERS:-block1,block2,block3}
TARGET=${TARGET:-right}
OTHER=${OTHER:-left}
OBJECT=${OBJECT:-ball}
RANDOM_SETS=${RANDOM_SETS:-10}
CLIPS=${CLIPS:-40}
SEED=${SEED:-0}
SHARDS=${SHARDS:-1}
mkdir -p "$out"
step() { printf '\n== %s\n' "$*" >&2; }

# sharded NAME.EXT COMMAND...: run COMMAND --shard K/N -o OUT/shards/NAME.K.EXT for every K at once,
# then merge into OUT/NAME.EXT (what the unsharded command writes); SHARDS=1 runs it once.
sharded() {
    local file=$1 name=${1%.*} ext=${1##*.}
    shift
    if [ "$SHARDS" = 1 ]; then "$@" -o "$out/$file"; return; fi
    mkdir -p "$out/shards"
    local k files=()
    for ((k = 0; k < SHARDS; k++)); do files+=("$out/shards/$name.$k.$ext"); done
    if command -v parallel >/dev/null; then
        seq 0 $((SHARDS - 1)) | parallel --halt now,fail=1 -j "${JOBS:-$SHARDS}" \
            "$(printf '%q ' "$@")" --shard {}/"$SHARDS" -o "$(printf '%q' "$out/shards/$name").{}.$ext"
    else
        seq 0 $((SHARDS - 1)) | xargs -P "${JOBS:-$SHARDS}" -I{} "$@" --shard {}/"$SHARDS" \
            -o "$out/shards/$name.{}.$ext"
    fi
    vt-merge --copy -o "$out/$file" "${files[@]}"
}

step "vt-detect: objects and tracks in every video"
sharded detections.jsonl vt-detect --detector "$DETECTOR" "$labels"

step "vt-concepts: concept clips and random sets"
common=(--videos "$labels" --split train --frames 16 --size 64 --seed "$SEED")
vt-concepts spatiotemporal "$out/detections.jsonl" "${common[@]}" --class "$OBJECT" --label "$TARGET" \
    --max-clips "$CLIPS" --name "${OBJECT}_${TARGET}" -o "$out/concepts.h5"
vt-concepts spatiotemporal "$out/detections.jsonl" "${common[@]}" --class "$OBJECT" --label "$OTHER" \
    --max-clips "$CLIPS" --name "${OBJECT}_${OTHER}" -o "$out/concepts.h5" --append
vt-concepts spatial "$out/detections.jsonl" "${common[@]}" --class "$OBJECT" --label "$TARGET" \
    --max-clips "$CLIPS" --name "${OBJECT}_static" -o "$out/concepts.h5" --append
vt-concepts random "${common[@]}" --exclude-label "$TARGET" --sets "$RANDOM_SETS" --clips-per-set "$CLIPS" \
    -o "$out/concepts.h5" --append

step "vt-embed: activations of the concept clips; gradients of '$TARGET' on its held-out videos"
model=(--model "$MODEL" --weights "$WEIGHTS" --layers "$LAYERS" --seed "$SEED")
sharded acts.h5 vt-embed "${model[@]}" "$out/concepts.h5"
sharded grads.h5 vt-embed "${model[@]}" "$labels" --label "$TARGET" --split test --target "$TARGET"

step "vt-cav: CAVs (concept vs random, random vs random, ${OBJECT}_${TARGET} vs ${OBJECT}_static)"
vt-cav "$out/acts.h5" --relative "${OBJECT}_${TARGET}:${OBJECT}_static" --seed "$SEED" -o "$out/cavs.h5"

step "vt-score and vt-stats"
vt-score "$out/cavs.h5" "$out/grads.h5" -o "$out/scores.jsonl"
vt-stats "$out/scores.jsonl" --plot "$out/tcav.png" --title "vtcav demo" -o "$out/stats.jsonl"
printf '\nresults: %s/stats.jsonl, figure: %s/tcav.png\n' "$out" "$out" >&2
