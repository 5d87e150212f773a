#!/usr/bin/env bash
# Creates (once) the virtualenv of the interop peers and prints its python.
# The venv lives in the cache, outside the repository; it is rebuilt when
# requirements.txt changes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${EVENTLINE_CACHE:-$HOME/.cache/eventline}
req=$here/requirements.txt
sum=$(sha256sum "$req" | cut -c1-12)
venv=$cache/venv-interop-$sum
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  python=${PYTHON:-python3}
  command -v "$python" >/dev/null || { echo "venv.sh: $python not found (install python3 and python3-venv)" >&2; exit 1; }
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
