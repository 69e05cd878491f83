#!/usr/bin/env bash
# System packages some tests need, from Debian's apt where it exists (run by scripts/install.sh):
#   espeak-ng                  speaks the sentences of the whole-video tests;
#   chromium, chromium-driver  the headless browser of `mesm serve`'s browser test (Debian builds
#                              chromedriver from the same source, so the versions always match).
# Idempotent: only what is missing is installed. Without apt-get or root it says what is missing
# and returns 0: those tests then skip, saying why.
set -euo pipefail
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null) ||
        echo "install_system.sh: could not install ${missing[*]} (some tests will skip)" >&2
else
    echo "install_system.sh: missing ${missing[*]} (apt-get install them as root to run" \
        "every test; the tests that need them skip)" >&2
fi
