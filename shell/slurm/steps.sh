#!/usr/bin/env bash
# One step of the sharded Video-TCAV chain, run by a SLURM job (shell/slurm/submit.sh), by GNU
# parallel (shell/slurm/parallel.sh) or by hand:
#
#   shell/slurm/steps.sh OUT STEP [K]
#
# STEP: detect K | merge-detections | concepts | embed-acts K | merge-acts | embed-grads K | merge-grads | tcav
# (K: the shard, 0-based; default $SLURM_ARRAY_TASK_ID). The settings come from OUT/settings.env,
# which submit.sh / parallel.sh write once, so a resubmitted shard runs with the same settings.
# A step whose output already exists does nothing (outputs are written atomically: a file that
# exists is complete), so re-running the chain redoes only what is missing.
set -euo pipefail
out=${1:?usage: steps.sh OUT STEP [K]}
step=${2:?usage: steps.sh OUT STEP [K]}
k=${3:-${SLURM_ARRAY_TASK_ID:-}}
# shellcheck disable=SC1091
source "$out/settings.env"
export PATH="$VTCAV_VENV/bin:$PATH" YOLO_OFFLINE=1 MPLBACKEND=Agg
shards=$out/shards
mkdir -p "$shards"
need_k() { [[ $k =~ ^[0-9]+$ ]] || { echo "steps.sh: $step needs the shard K (or SLURM_ARRAY_TASK_ID)" >&2; exit 2; }; }
done_already() { if [ -e "$1" ]; then echo "steps.sh: $step: $1 exists, nothing to do" >&2; return 0; fi; return 1; }
shard_files() { local f; for ((i = 0; i < SHARDS; i++)); do f=$shards/$1.$i.$2; printf '%s\n' "$f"; done; }

dynamic=${OBJECT// /_}_${TARGET// /_}
others=${OBJECT// /_}_${OTHER// /_}
static=${OBJECT// /_}_static
clip=(--videos "$LABELS" --split "$CONCEPT_SPLIT" --frames "$FRAMES" --size "$SIZE" --seed "$SEED")
model=(--model "$MODEL" --weights "$WEIGHTS" --layers "$LAYERS" --seed "$SEED" --batch-size "$BATCH_SIZE")
printf '== %s%s on %s, %s\n' "$step" "${k:+ shard $k/$SHARDS}" "$(hostname)" "$(date -u +%FT%TZ)" >&2

case $step in
detect)
    need_k
    done_already "$shards/detections.$k.jsonl" ||
        vt-detect --detector "$DETECTOR" "$LABELS" --shard "$k/$SHARDS" -o "$shards/detections.$k.jsonl" ;;
merge-detections)
    done_already "$out/detections.jsonl" || {
        mapfile -t files < <(shard_files detections jsonl); vt-merge -o "$out/detections.jsonl" "${files[@]}"; } ;;
concepts)
    done_already "$out/concepts.h5" || {
        d=$out/detections.jsonl
        vt-concepts spatiotemporal "$d" "${clip[@]}" --class "$OBJECT" --label "$TARGET" --max-clips "$CLIPS" \
            --name "$dynamic" -o "$shards/c_target.h5"
        vt-concepts spatiotemporal "$d" "${clip[@]}" --class "$OBJECT" --label "$OTHER" --max-clips "$CLIPS" \
            --name "$others" -o "$shards/c_other.h5"
        vt-concepts spatial "$d" "${clip[@]}" --class "$OBJECT" --label "$TARGET" --max-clips "$CLIPS" \
            --name "$static" -o "$shards/c_static.h5"
        vt-concepts random "${clip[@]}" --exclude-label "$TARGET" --sets "$RANDOM_SETS" --clips-per-set "$CLIPS" \
            -o "$shards/c_random.h5"
        vt-concepts merge "$shards"/c_target.h5 "$shards"/c_other.h5 "$shards"/c_static.h5 "$shards"/c_random.h5 \
            -o "$out/concepts.h5"
    } ;;
embed-acts)
    need_k
    done_already "$shards/acts.$k.h5" ||
        vt-embed "${model[@]}" "$out/concepts.h5" --shard "$k/$SHARDS" -o "$shards/acts.$k.h5" ;;
embed-grads)
    need_k
    done_already "$shards/grads.$k.h5" ||
        vt-embed "${model[@]}" "$LABELS" --label "$TARGET" --split "$INPUT_SPLIT" --target "$TARGET" \
            --shard "$k/$SHARDS" -o "$shards/grads.$k.h5" ;;
merge-acts)
    # --copy: the merged file stands alone, so the shards can be deleted afterwards
    done_already "$out/acts.h5" || {
        mapfile -t files < <(shard_files acts h5); vt-merge --copy -o "$out/acts.h5" "${files[@]}"; } ;;
merge-grads)
    done_already "$out/grads.h5" || {
        mapfile -t files < <(shard_files grads h5); vt-merge --copy -o "$out/grads.h5" "${files[@]}"; } ;;
tcav)
    done_already "$out/stats.jsonl" || {
        vt-cav "$out/acts.h5" --relative "$dynamic:$static" --seed "$SEED" -o "$out/cavs.h5"
        vt-score "$out/cavs.h5" "$out/grads.h5" -o "$out/scores.jsonl"
        vt-stats "$out/scores.jsonl" --plot "$out/tcav.png" -o "$out/stats.jsonl"
    } ;;
*)
    echo "steps.sh: unknown step '$step' (detect, merge-detections, concepts, embed-acts, merge-acts," \
         "embed-grads, merge-grads, tcav)" >&2
    exit 2 ;;
esac
