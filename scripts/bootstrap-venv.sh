#!/usr/bin/env bash
# Creates the project's virtual environment with a working pip, installing Debian's
# python3-venv when the interpreter lacks the venv module (as a bare Debian python3 does).
set -euo pipefail
PYTHON="${1:-python3}"
VENV="${2:-.venv}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then exit 0; fi
if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c "import ensurepip" 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    ver=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" || \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  else
    echo "bootstrap-venv: $PYTHON has no venv module; install python3-venv" >&2; exit 1
  fi
fi
# pesq (a test dependency) ships only as source: it needs a C compiler and Python's headers.
has_headers=$("$PYTHON" -c 'import os, sysconfig; print(int(os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))))')
if ! command -v gcc >/dev/null 2>&1 || [ "$has_headers" != 1 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev
  else
    echo "bootstrap-venv: a C compiler and Python headers are needed (pesq builds from source)" >&2
  fi
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
