#!/usr/bin/env bash
# Create .venv (if missing) and install vtcav with its test extras. Idempotent.
#   VTCAV_VENV      where the environment lives (default: .venv in the repository)
#   VTCAV_TORCH     the torch/torchvision requirement (default: the releases this project is tested with)
#   VTCAV_EXTRAS    pip extras (default: test)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${VTCAV_VENV:-$repo/.venv}
torch_spec=${VTCAV_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
extras=${VTCAV_EXTRAS:-test}

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv" >&2
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
stamp="$venv/.vtcav-installed"
# Re-install only when the project's requirements changed (fast re-runs of the README commands).
want=$(cat "$repo/pyproject.toml" "$repo/shell/setup.sh" | sha256sum | cut -c1-16)-$extras
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
"$py" -m pip install --quiet --upgrade pip >&2
# torch first, pinned: an unpinned torch may pull a multi-GB build from the network.
# shellcheck disable=SC2086
"$py" -m pip install --quiet $torch_spec >&2
"$py" -m pip install --quiet -e "$repo[$extras]" >&2
echo "$want" > "$stamp"
echo "setup: vtcav installed in $venv" >&2
