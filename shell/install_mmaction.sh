#!/usr/bin/env bash
# Install the optional mmaction2 model source (vtcav's `mmaction:` models) into a venv.
#
#   shell/install_mmaction.sh [PYTHON]      # PYTHON defaults to .venv/bin/python
#
# Idempotent: packages already at the pinned versions are left alone. Only PyPI.
# - mmcv-lite, not mmcv: full mmcv compiles CUDA/C++ ops for ~20 minutes, and
#   vtcav never calls those ops (a recognizer's forward is plain PyTorch).
# - mmaction2 goes in with --no-deps: its metadata asks for opencv-contrib-python,
#   which would be written over the opencv-python that ultralytics already
#   installed (both ship the cv2 package), and for decord, which only its dataset
#   loaders use. Its real import-time needs are installed explicitly below.
# - torch is never replaced: the install is checked against the version before.
set -euo pipefail

PYTHON="${1:-.venv/bin/python}"
PIP=("$PYTHON" -m pip install --disable-pip-version-check --quiet)

torch_before="$("$PYTHON" -c 'import torch; print(torch.__version__)')"

"${PIP[@]}" "mmengine==0.10.7" "mmcv-lite==2.1.0" "importlib_metadata" "einops"
"${PIP[@]}" --no-deps "mmaction2==1.2.0"

torch_after="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
if [[ "$torch_before" != "$torch_after" ]]; then
    echo "install_mmaction.sh: torch changed from $torch_before to $torch_after" >&2
    exit 1
fi

# The import that vtcav performs (it supplies the module the 1.2.0 wheel lacks).
"$PYTHON" -c 'from vtcav_common.models.mmaction_source import import_mmaction; m = import_mmaction(); print("mmaction2", m.__version__, "ready")'
