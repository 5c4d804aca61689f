#!/usr/bin/env bash
# Downloads, into .whl/ (git-ignored), the wheels that the GPU machine's image lacks and our
# training needs: it runs Python 3.12 on x86-64 and reaches no package index, so they travel
# with the working tree (name .whl in the device call's carry; scripts/device-train.sh
# installs them). About 3 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any"
for p in soundfile cffi pycparser soxr pyroomacoustics; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    $platforms -d .whl "$p"
done
# fast_bss_eval ships as source only: build its (pure-Python) wheel here.
python3 -m pip wheel -q --no-deps -w .whl fast_bss_eval
ls .whl
