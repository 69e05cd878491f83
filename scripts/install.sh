#!/usr/bin/env bash
# Installs mesm and everything it needs on a fresh machine (CPU wheels of torch where available).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip"
# torch/torchvision first, pinned, so nothing below pulls another build by accident.
$PIP install --quiet "torch==${MESM_TORCH:-2.14.1}" "torchvision==${MESM_TORCHVISION:-0.29.1}"
# facenet-pytorch ships the MTCNN weights but pins torch<2.3 in its metadata: install without deps.
$PIP install --quiet --no-deps "facenet-pytorch==2.6.0"
# The test extras and the `app` extra (Gradio, for `mesm serve` and its browser test).
$PIP install --quiet -e ".[dev,app]"
# System packages of some tests (espeak-ng; chromium + chromium-driver for the browser test).
bash scripts/install_system.sh
# The compiled sparse engine (C++ ops, built once per torch version and CPU into
# ~/.cache/mesm/extensions); where no compiler exists this prints the fallback and its reason.
python -m mesm.sparse
