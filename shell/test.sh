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
export YOLO_OFFLINE=1 MPLBACKEND=Agg
exec "$py" -m pytest "$@"
