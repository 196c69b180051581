#!/usr/bin/env bash
# Run one failed shard again, alone, then the rest of the chain after it:
#
#   shell/slurm/resubmit.sh OUT STEP K [SBATCH OPTIONS...]     e.g. resubmit.sh run1 embed-acts 3
#
# STEP is an array step (detect, embed-acts, embed-grads). The shard runs with the settings of
# OUT/settings.env (those of the first submit); the steps after it are submitted again, waiting
# for it (STEPS=... AFTER=<the new job>), and every step whose output exists already skips.
# NO_CHAIN=1 resubmits the shard only.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: resubmit.sh OUT STEP K [SBATCH OPTIONS...]}
step=${2:?usage: resubmit.sh OUT STEP K}
k=${3:?usage: resubmit.sh OUT STEP K}
shift 3
if [ ! -f "$out/settings.env" ]; then
    echo "resubmit.sh: error: $out/settings.env: no such file (submit the run first)" >&2
    exit 1
fi
# shellcheck disable=SC1091
set -a; source "$out/settings.env"; set +a
out=$OUT   # absolute: the job may start in another folder
case $step in
    detect) next="merge-detections concepts embed-acts merge-acts tcav"; file=$out/shards/detections.$k.jsonl ;;
    embed-acts) next="merge-acts tcav"; file=$out/shards/acts.$k.h5 ;;
    embed-grads) next="merge-grads tcav"; file=$out/shards/grads.$k.h5 ;;
    *) echo "resubmit.sh: error: $step is not a sharded step (detect, embed-acts, embed-grads)" >&2; exit 2 ;;
esac
if ! [[ $k =~ ^[0-9]+$ ]] || [ "$k" -ge "$SHARDS" ]; then
    echo "resubmit.sh: error: shard $k: this run has shards 0..$((SHARDS - 1))" >&2
    exit 2
fi
rm -f "$file"   # a shard file that exists is complete; remove it so the step runs again
mkdir -p "$out/logs"
id=$(sbatch --parsable --job-name "vt-$step" --output "$out/logs/%x.%A_%a.log" --array "$k" "$@" \
     "$here/steps.sh" "$out" "$step")
id=${id%%;*}
printf '%s %s (shard %s)\n' "$step" "$id" "$k" | tee -a "$out/jobs.txt"
[ "${NO_CHAIN:-0}" = 1 ] && exit 0
STEPS=$next AFTER=$id exec "$here/submit.sh" "$LABELS" "$out" "$@"
