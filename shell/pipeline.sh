#!/usr/bin/env bash
# The Video-TCAV chain, one command per step, on a labelled set of videos:
#
#   shell/pipeline.sh LABELS.jsonl OUT_DIR
#
# detect -> concepts (the ball moving right / left, its static crop, random sets)
#        -> embed (activations; gradients of the target class) -> cav -> score -> stats
# Every step reads the files the step before wrote, so any step can be re-run alone
# (see shell/Makefile for the same chain with make). Settings come from the environment:
set -euo pipefail
labels=${1:?usage: pipeline.sh LABELS.jsonl OUT_DIR}
out=${2:?usage: pipeline.sh LABELS.jsonl OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
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
mkdir -p "$out"
step() { printf '\n== %s\n' "$*" >&2; }

step "vt-detect: objects and tracks in every video"
vt-detect --model "$DETECTOR" "$labels" -o "$out/detections.jsonl"

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
vt-embed "${model[@]}" "$out/concepts.h5" -o "$out/acts.h5"
vt-embed "${model[@]}" "$labels" --label "$TARGET" --split test --target "$TARGET" -o "$out/grads.h5"

step "vt-cav: CAVs (concept vs random, random vs random, ${OBJECT}_${TARGET} vs ${OBJECT}_static)"
vt-cav "$out/acts.h5" --relative "${OBJECT}_${TARGET}:${OBJECT}_static" --seed "$SEED" -o "$out/cavs.h5"

step "vt-score and vt-stats"
vt-score "$out/cavs.h5" "$out/grads.h5" -o "$out/scores.jsonl"
vt-stats "$out/scores.jsonl" --plot "$out/tcav.png" --title "vtcav demo" -o "$out/stats.jsonl"
printf '\nresults: %s/stats.jsonl, figure: %s/tcav.png\n' "$out" "$out" >&2
