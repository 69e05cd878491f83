#!/usr/bin/env bash
# Installs mesm and everything it needs on a fresh machine (CPU wheels of torch where available).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip"
# torch/torchvision first, pinned, so nothing below pulls another build by accident.
$PIP install --quiet "torch==${MESM_TORCH:-2.14.1}" "torchvision==${MESM_TORCHVISION:-0.29.1}"
# facenet-pytorch ships the MTCNN weights but pins torch<2.3 in its metadata: install without deps.
$PIP install --quiet --no-deps "facenet-pytorch==2.6.0"
$PIP install --quiet -e ".[dev]"
# espeak-ng (a system package) speaks the sentences of the whole-video tests; the tests that need
# it skip, saying why, where it cannot be installed.
if ! command -v espeak-ng >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng \
            >/dev/null) || echo "install.sh: could not install espeak-ng (some tests will skip)" >&2
    else
        echo "install.sh: espeak-ng is missing (apt-get install espeak-ng as root to run every test)" >&2
    fi
fi
