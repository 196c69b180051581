#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (slurmctld + slurmd on localhost), to try the
# job-array scripts of shell/slurm/ and to test them (tests/test_slurm.py).
#
#   eval "$(shell/start_slurm.sh start)"     # prints: export SLURM_CONF=.../slurm.conf
#   sbatch --array=0-1 ...; squeue; sinfo
#   shell/start_slurm.sh stop                # stops what `start` started, by its PID files
#
# Needs root (munged and slurmd run as root here). Installs Debian's slurm-wlm and munge with
# apt-get when they are missing. State, spool, logs and PID files live in one folder:
#   VTCAV_SLURM_DIR   (default: /tmp/vtcav-slurm)    VTCAV_SLURM_PORT  (slurmctld; slurmd: +1; default 6817)
set -euo pipefail
action=${1:-start}
dir=${2:-${VTCAV_SLURM_DIR:-/tmp/vtcav-slurm}}
port=${VTCAV_SLURM_PORT:-6817}
conf=$dir/slurm.conf
log() { printf 'start_slurm: %s\n' "$*" >&2; }

stop_pid_file() {   # kill the process a PID file names, if it still runs; never by name
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$file"
}

if [ "$action" = stop ]; then
    stop_pid_file "$dir/slurmd.pid"
    stop_pid_file "$dir/slurmctld.pid"
    [ -f "$dir/munged.started" ] && stop_pid_file "$dir/munged.pid" && rm -f "$dir/munged.started"
    log "stopped the cluster of $dir"
    exit 0
fi
[ "$action" = start ] || { echo "usage: start_slurm.sh start|stop [DIR]" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing slurm-wlm and munge (apt-get)"
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge; } \
            >"$dir.apt.log" 2>&1 \
            || { log "apt-get failed, see $dir.apt.log"; exit 1; }
    else
        log "slurmctld/munged not found, and cannot install them (needs root and apt-get)"; exit 1
    fi
fi
[ "$(id -u)" = 0 ] || { log "needs root (munged and slurmd run as root here)"; exit 1; }
mkdir -p "$dir/state" "$dir/spool" "$dir/log"

# munge: one key, one daemon (reused when one already answers)
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    munged --force --pid-file="$dir/munged.pid" 2>>"$dir/log/munged.log" || munged --force 2>>"$dir/log/munged.log"
    touch "$dir/munged.started"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || { log "munge does not work (see $dir/log/munged.log)"; exit 1; }

host=$(hostname)
cpus=$(nproc)
cat > "$conf" <<EOF
ClusterName=vtcav
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
running "$dir/slurmctld.pid" || slurmctld -f "$conf"
running "$dir/slurmd.pid" || slurmd -f "$conf"
for _ in $(seq 120); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
    case $state in idle|mixed|allocated) break ;; esac
    sleep 0.5
done
case ${state:-} in
    idle|mixed|allocated) log "node $host is $state ($cpus CPUs); SLURM_CONF=$conf" ;;
    *) log "the node did not come up (state '${state:-none}'); see $dir/log/"; exit 1 ;;
esac
printf 'export SLURM_CONF=%s\n' "$conf"
