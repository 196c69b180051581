#!/usr/bin/env bash
# The whole Video-TCAV chain as SLURM jobs, heavy steps as job arrays of SHARDS tasks:
#
#   SHARDS=8 shell/slurm/submit.sh LABELS.jsonl OUT [SBATCH OPTIONS...]
#   e.g. ... OUT --partition gpu --gres=gpu:1 --time 4:00:00 --cpus-per-task 8
#
#   detect (array) -> merge-detections -> concepts -> embed-acts (array) -> merge-acts --\
#   embed-grads (array; it reads only the videos, so it starts at once) -> merge-grads -> tcav
#
# Each job waits for the ones it reads with --dependency=afterok (an array: all its tasks), and is
# cancelled if one of them fails (--kill-on-invalid-dep). Logs: OUT/logs/<step>.<job>_<task>.log.
# Prints "step job-id" per submitted job (also kept in OUT/jobs.txt). Settings come from the
# environment, as for shell/pipeline.sh (see shell/slurm/settings.sh), and are written once to
# OUT/settings.env; a second submit to the same OUT must use the same settings.
#   STEPS="s1 s2 ..."  submit only these steps (default: all); a step left out must have its output
#                      already, and the submitted ones do not wait for it
#   AFTER=JOBID        make the jobs that wait for no submitted step wait for JOBID (afterok)
# A failed shard alone: shell/slurm/resubmit.sh OUT STEP K.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=settings.sh
source "$here/settings.sh"
labels=${1:?usage: submit.sh LABELS.jsonl OUT [SBATCH OPTIONS...]}
out=${2:?usage: submit.sh LABELS.jsonl OUT [SBATCH OPTIONS...]}
shift 2
extra=("$@")
[ -f "$labels" ] || { echo "submit.sh: error: $labels: no such file" >&2; exit 1; }
command -v sbatch >/dev/null || { echo "submit.sh: error: sbatch not found (is SLURM installed?)" >&2; exit 1; }

mkdir -p "$out"
previous=""
[ -f "$out/settings.env" ] && previous=$(grep -v '^#' "$out/settings.env")
write_settings "$labels" "$out"
if [ -n "$previous" ] && [ "$previous" != "$(grep -v '^#' "$out/settings.env")" ]; then
    printf '%s\n' "# written by shell/slurm/settings.sh; every step of this run reads it" "$previous" \
        > "$out/settings.env"   # put the first settings back
    echo "submit.sh: error: $out/settings.env: $out was run with other settings; use a new OUT" >&2
    exit 1
fi
# shellcheck disable=SC1091
source "$out/settings.env"
out=$OUT   # absolute: the jobs may start in another folder
mkdir -p "$out/logs"

all=(detect merge-detections concepts embed-acts merge-acts embed-grads merge-grads tcav)
read -r -a chosen <<< "${STEPS:-${all[*]}}"
for step in "${chosen[@]}"; do
    [[ " ${all[*]} " == *" $step "* ]] || { echo "submit.sh: error: STEPS: no step '$step' (${all[*]})" >&2; exit 2; }
done
declare -A job=()
submit() {   # submit STEP ARRAY(0/1) STEPS-IT-READS...
    local step=$1 array=$2 deps=() d id
    shift 2
    [[ " ${chosen[*]} " == *" $step "* ]] || return 0
    for d in "$@"; do [ -n "${job[$d]:-}" ] && deps+=("${job[$d]}"); done
    [ ${#deps[@]} -eq 0 ] && [ -n "${AFTER:-}" ] && deps=("$AFTER")
    local options=(--parsable --job-name "vt-$step" --output "$out/logs/%x.%j.log")
    [ "$array" = 1 ] && options=(--parsable --job-name "vt-$step" --output "$out/logs/%x.%A_%a.log"
                                 --array "0-$((SHARDS - 1))")
    if [ ${#deps[@]} -gt 0 ]; then
        options+=(--dependency "afterok:$(IFS=:; echo "${deps[*]}")" --kill-on-invalid-dep=yes)
    fi
    id=$(sbatch "${options[@]}" "${extra[@]}" "$here/steps.sh" "$out" "$step")
    id=${id%%;*}
    job[$step]=$id
    printf '%s %s\n' "$step" "$id" | tee -a "$out/jobs.txt"
}
submit detect 1
submit merge-detections 0 detect
submit concepts 0 merge-detections
submit embed-acts 1 concepts
submit merge-acts 0 embed-acts
submit embed-grads 1
submit merge-grads 0 embed-grads
submit tcav 0 merge-acts merge-grads
