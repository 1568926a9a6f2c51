#!/usr/bin/env bash
# Installs what AIRClass needs on a fresh Debian/Ubuntu machine, idempotently.
#   scripts/install.sh run   - the product: Python venv with the package, hls.js for the pages
#   scripts/install.sh test  - the above plus what the tests drive for real (ffmpeg, chromium)
#   scripts/install.sh bench - the above plus the baselines the benchmarks compare against
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-run}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

need_apt=()
want() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }
if [ "$what" = test ] || [ "$what" = bench ]; then
  want ffmpeg ffmpeg
  want ffprobe ffmpeg
  want chromium chromium
  want prometheus prometheus
  want docker-compose docker-compose
  # Korean text in the pages' screenshots needs a Korean font on the test machine.
  [ -e /usr/share/fonts/truetype/nanum/NanumGothic.ttf ] || need_apt+=(fonts-nanum)
fi
if [ "$what" = bench ]; then
  want nginx nginx
  [ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || need_apt+=(libnginx-mod-rtmp)
  want wrk wrk
fi
want npm npm
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
if [ "$what" = test ] || [ "$what" = bench ]; then
  "$VENV/bin/python" -m pip install -q -e '.[test]'
else
  "$VENV/bin/python" -m pip install -q -e .
fi

if [ ! -f node_modules/hls.js/dist/hls.min.js ] || [ package.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund --loglevel=error
fi
