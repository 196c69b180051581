#!/usr/bin/env bash
# Set up (shell/setup.sh) and run the whole test suite, including the optional
# mmaction2 model source. Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
"$repo/shell/setup.sh"
py="${VTCAV_VENV:-$repo/.venv}/bin/python"
if [ "${VTCAV_SKIP_MMACTION:-0}" != 1 ]; then
    "$repo/shell/install_mmaction.sh" "$py" >&2
fi
# tests/test_slurm.py runs a single-node SLURM; GNU parallel runs the shard recipes; tests/test_report.py
# renders the report in headless Chromium. Installed
# (quietly, once) where we may: as root with apt-get; elsewhere that test skips and says why.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
        && ! { command -v slurmctld && command -v munged && command -v parallel \
               && command -v chromium; } >/dev/null; then
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge parallel chromium; } \
        >/tmp/vtcav-apt.log 2>&1 || echo "test.sh: apt-get install slurm-wlm munge parallel chromium failed (see /tmp/vtcav-apt.log)" >&2
fi
export YOLO_OFFLINE=1 MPLBACKEND=Agg
# pytest-xdist: one worker a core, at most 4 (each builds the session's worlds once); a test
# module stays on one worker (conftest.py groups them). VTCAV_TEST_WORKERS=0 runs serially.
workers=${VTCAV_TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}
[ "$workers" -gt 4 ] && workers=4
if [ "$workers" -ge 2 ]; then
    exec "$py" -m pytest -n "$workers" --dist loadgroup "$@"
fi
exec "$py" -m pytest "$@"
