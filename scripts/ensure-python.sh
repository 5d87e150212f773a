#!/usr/bin/env bash
# Makes sure python3 can create virtualenvs: the interop tests run Confluent's
# own Python client in one (scripts/interop/venv.sh). Root on Debian/Ubuntu:
# installs python3-venv with apt-get; anyone else: says what to install.
set -euo pipefail
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
if command -v python3 >/dev/null 2>&1 && python3 -m venv --without-pip "$probe/v" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-python: installing python3 and python3-venv with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends python3 python3-venv python3-pip >&2
  exit 0
fi
echo "ensure-python: python3 with the venv module is needed (Debian/Ubuntu: sudo apt-get install python3 python3-venv)" >&2
exit 1
