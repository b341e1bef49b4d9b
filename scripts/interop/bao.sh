# Sourced by gen_all.sh and check.sh: starts an OpenBao dev server on a
# loopback port (in-memory, root token "root") and stops it on exit. Leaves
# BAO_ADDR unset when the server cannot start, so the Vault steps are skipped.
bao_bin="$root/.interop/venv/bin/bao"
bao_port="${KEYTURN_BAO_PORT:-18200}"
bao_pid=""
stop_bao() {
  if [ -n "$bao_pid" ]; then
    kill "$bao_pid" 2>/dev/null || true
    wait "$bao_pid" 2>/dev/null || true
    bao_pid=""
  fi
}
if [ -x "$bao_bin" ]; then
  "$bao_bin" server -dev -dev-listen-address="127.0.0.1:$bao_port" -dev-root-token-id=root \
    > "$root/.interop/bao.log" 2>&1 &
  bao_pid=$!
  for _ in $(seq 1 50); do
    if curl -sf "http://127.0.0.1:$bao_port/v1/sys/health" > /dev/null 2>&1; then
      export BAO_ADDR="http://127.0.0.1:$bao_port" BAO_TOKEN=root
      break
    fi
    sleep 0.2
  done
  if [ -z "${BAO_ADDR:-}" ]; then
    echo "OpenBao dev server did not start (see .interop/bao.log): Vault steps skipped" >&2
    stop_bao
  fi
fi
