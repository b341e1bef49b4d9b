#!/usr/bin/env bash
# Regenerates the checked-in vectors under testdata/codecs with the real
# libraries (see setup.sh for what it installs). Ciphertexts are random, so
# every run rewrites the files; the keys are fixed test keys.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash scripts/interop/setup.sh
. scripts/interop/bao.sh
trap stop_bao EXIT
.interop/venv/bin/python scripts/interop/gen_vectors.py --out testdata/codecs
.interop/venv/bin/python scripts/interop/gen_multi_vectors.py --out testdata/codecs
NODE_PATH="$root/.interop/node_modules" node scripts/interop/gen_vectors.mjs --out testdata/codecs
