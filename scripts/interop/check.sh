#!/usr/bin/env bash
# Interop check, both directions, with the real libraries:
#   1. the real libraries write fresh values under an old key (gen_vectors.*
#      --interop; Vault values by an OpenBao dev server on 127.0.0.1),
#   2. keyturn rotates them to the new key (the ignored test
#      crates/codecs/tests/interop.rs),
#   3. the real libraries read keyturn's output with only the new key
#      (verify_rotated.*), Fernet also checking the original timestamp.
# Installs what it needs into .interop/ (setup.sh). Exits non-zero on any
# failure; prints "N passed, M failed" per reader.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bash scripts/interop/setup.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/keyturn-interop.XXXXXX")
. scripts/interop/bao.sh
trap 'stop_bao; rm -rf "$work"' EXIT
export NODE_PATH="$root/.interop/node_modules"
.interop/venv/bin/python scripts/interop/gen_vectors.py --out "$work/input" --interop --bao-key "keyturn-check-$$"
node scripts/interop/gen_vectors.mjs --out "$work/input" --interop
KEYTURN_INTEROP_DIR="$work" cargo test -p keyturn-codecs --test interop -- --ignored --nocapture
status=0
.interop/venv/bin/python scripts/interop/verify_rotated.py "$work/rotated" || status=1
node scripts/interop/verify_rotated.mjs "$work/rotated" || status=1
if [ -z "${BAO_ADDR:-}" ]; then
  echo "note: Vault values were not checked (no OpenBao server)" >&2
fi
exit $status
