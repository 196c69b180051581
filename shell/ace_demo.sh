#!/usr/bin/env bash
# 3D-ACE on the synthetic world: discover each class's concepts, rank them by TCAV, check faithfulness.
#
#   shell/ace_demo.sh [OUT] [CLASSES]        e.g. shell/ace_demo.sh ace_out right,up
#
# Environment: VTCAV_VENV (default .venv), TRAIN / TEST videos per class (default 10 / 10),
# K clusters (default 10), LAYER (default block3), R random sets (default 10), WEIGHTS (default
# weights/classifier.pt), SEED (default 3: a world the classifier, trained on seed 0, has never seen).
# Writes OUT/world, and per class OUT/CLASS/{cand.h5, concepts.h5, ranking.jsonl, faith.jsonl,
# faith.md, sheets/*.png}; prints the faithfulness tables on stderr.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-ace_out}
classes=${2:-right}
bin=${VTCAV_VENV:-$repo/.venv}/bin
train=${TRAIN:-10}; test=${TEST:-10}; k=${K:-10}; layer=${LAYER:-block3}; sets=${R:-10}; seed=${SEED:-3}
model=(--model vtcav_common.models.tiny:motion_c3d --weights "${WEIGHTS:-$repo/weights/classifier.pt}")
export YOLO_OFFLINE=1 MPLBACKEND=Agg MPLCONFIGDIR=${MPLCONFIGDIR:-$(mktemp -d)}

mkdir -p "$out"
[ -f "$out/world/labels.jsonl" ] || "$bin/vt-synth" "$out/world" --seed "$seed" --train-per-class "$train" \
    --test-per-class "$test"
labels="$out/world/labels.jsonl"
[ -f "$out/random.h5" ] || "$bin/vt-concepts" random --videos "$labels" --split train -R "$sets" \
    --clips-per-set 40 --seed "$seed" -o "$out/random.h5"

for class in ${classes//,/ }; do
    dir="$out/$class"
    mkdir -p "$dir"
    "$bin/vt-ace" supervoxels "$labels" --label "$class" --split train -o "$dir/cand.h5"
    start=$(date +%s)
    "$bin/vt-ace" discover "$dir/cand.h5" --random "$out/random.h5" --videos "$labels" --target "$class" \
        --layer "$layer" --k "$k" "${model[@]}" -o "$dir/concepts.h5" --ranking "$dir/ranking.jsonl"
    echo "ace_demo: discovery for '$class' took $(( $(date +%s) - start )) s" >&2
    "$bin/vt-ace" faithfulness "$dir/concepts.h5" "$dir/ranking.jsonl" --videos "$labels" --split test \
        "${model[@]}" -o "$dir/faith.jsonl" --table "$dir/faith.md"
    "$bin/vt-ace" sheet "$dir/concepts.h5" --ranking "$dir/ranking.jsonl" -o "$dir/sheets"
done
