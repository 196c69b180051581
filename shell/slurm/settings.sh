#!/usr/bin/env bash
# Write OUT/settings.env: the chain's settings (from the environment, with the demo's defaults),
# read by every step of shell/slurm/steps.sh. Sourced by submit.sh and parallel.sh:
#   write_settings LABELS OUT
# Settings: SHARDS DETECTOR MODEL WEIGHTS LAYERS TARGET OTHER OBJECT RANDOM_SETS CLIPS SEED FRAMES SIZE
#           BATCH_SIZE CONCEPT_SPLIT INPUT_SPLIT VTCAV_VENV
write_settings() {
    local labels=$1 out=$2 repo
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    mkdir -p "$out"
    labels=$(cd "$(dirname "$labels")" && pwd)/$(basename "$labels")
    out=$(cd "$out" && pwd)
    local -A s=(
        [LABELS]=$labels [OUT]=$out [SHARDS]=${SHARDS:-2}
        [DETECTOR]=${DETECTOR:-$repo/weights/detector.pt}
        [MODEL]=${MODEL:-vtcav_common.models.tiny:motion_c3d}
        [WEIGHTS]=${WEIGHTS:-$repo/weights/classifier.pt}
        [LAYERS]=${LAYERS:-block1,block2,block3}
        [TARGET]=${TARGET:-right} [OTHER]=${OTHER:-left} [OBJECT]=${OBJECT:-ball}
        [RANDOM_SETS]=${RANDOM_SETS:-10} [CLIPS]=${CLIPS:-40} [SEED]=${SEED:-0}
        [FRAMES]=${FRAMES:-16} [SIZE]=${SIZE:-64} [BATCH_SIZE]=${BATCH_SIZE:-8}
        [CONCEPT_SPLIT]=${CONCEPT_SPLIT:-train} [INPUT_SPLIT]=${INPUT_SPLIT:-test}
        [VTCAV_VENV]=${VTCAV_VENV:-$repo/.venv}
    )
    [[ ${s[SHARDS]} =~ ^[1-9][0-9]*$ ]] || { echo "settings: SHARDS must be a positive integer" >&2; return 2; }
    local key tmp=$out/.settings.env.tmp
    {
        echo "# written by shell/slurm/settings.sh; every step of this run reads it"
        for key in $(printf '%s\n' "${!s[@]}" | sort); do printf '%s=%q\n' "$key" "${s[$key]}"; done
    } > "$tmp"
    mv "$tmp" "$out/settings.env"
}
