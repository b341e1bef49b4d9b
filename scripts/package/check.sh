#!/usr/bin/env bash
# The packaging check (.ci/run runs it before the tests), with one release
# build for both ways to install:
#  a. `cargo install --locked --path crates/cli` into a temporary root: the
#     installed binary prints its version and runs the demo;
#  b. the Debian package (scripts/package/deb.sh, no second compile): installed
#     with dpkg -i, it lists the man page and the completions, its binary is
#     stripped, /usr/bin/keyturn prints its version and runs the demo; then it
#     is purged again;
#  c. the sizes of the stripped binary and of the package.
# Installs cargo-deb when missing. dpkg -i needs root (or passwordless sudo).
set -euo pipefail
cd "$(dirname "$0")/../.."

start=$SECONDS
step() { echo "== package check [$((SECONDS - start)) s]: $*"; }
fail() { echo "package check FAILED: $*" >&2; exit 1; }
# Runs a command, saying what it ran, and names it when it fails.
run() {
    echo "+ $*"
    "$@" || fail "exit code $? from: $*"
}

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    fail "dpkg -i needs root: run this as root, or as a user with passwordless sudo"
fi

# shellcheck disable=SC2016 # ${Status} is dpkg-query's field, not the shell's
if dpkg-query -W -f '${Status}' keyturn 2>/dev/null | grep -q ' installed$'; then
    if [ -z "${CI:-}" ]; then
        fail "a keyturn package is installed already; this check installs its own and purges it afterwards: remove yours first (dpkg -r keyturn)"
    fi
    echo "note: a keyturn package is installed already (CI): it is replaced, then purged"
fi

step "tools"
if ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
    run "${SUDO[@]}" apt-get update -qq
    run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev
fi
if ! cargo deb --version >/dev/null 2>&1; then
    # In cargo's own temporary target dir, not the workspace's.
    t0=$SECONDS
    run env -u CARGO_TARGET_DIR cargo install cargo-deb --locked --version '^3'
    echo "cargo-deb installed in $((SECONDS - t0)) s"
fi
cargo deb --version

target_dir=$(cargo metadata --no-deps --format-version 1 --locked |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || fail "could not read the target directory from cargo metadata"
version=$(cargo metadata --no-deps --format-version 1 --locked |
    grep -o '"name":"keyturn","version":"[^"]*"' | sed 's/.*"version":"\([^"]*\)"/\1/')
[ -n "$version" ] || fail "could not read keyturn's version from cargo metadata"

tmp=$(mktemp -d)
installed=
cleanup() {
    if [ -n "$installed" ]; then
        echo "+ dpkg --purge keyturn"
        "${SUDO[@]}" dpkg --purge keyturn >/dev/null || echo "warning: dpkg --purge keyturn failed" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# Runs the installed binary $1: --version must name this version, the demo
# must end with exit 0.
try_binary() {
    local bin=$1 demo=$2 out
    echo "+ $bin --version"
    out=$("$bin" --version) || fail "exit code $? from: $bin --version"
    echo "$out"
    [ "$out" = "keyturn $version" ] || fail "$bin --version printed '$out', not 'keyturn $version'"
    run "$bin" demo --dir "$demo" --rows 2000
}

step "a. cargo install --locked --path crates/cli (release build, into $target_dir)"
t0=$SECONDS
# The workspace's target dir, so that deb.sh finds this build and compiles nothing.
run env CARGO_TARGET_DIR="$target_dir" cargo install --locked --path crates/cli --root "$tmp/root"
build_s=$((SECONDS - t0))
try_binary "$tmp/root/bin/keyturn" "$tmp/demo-install"

step "b. the Debian package"
t0=$SECONDS
echo "+ bash scripts/package/deb.sh"
deb=$(bash scripts/package/deb.sh | tail -n 1) || fail "scripts/package/deb.sh failed"
deb_s=$((SECONDS - t0))
[ -f "$deb" ] || fail "deb.sh did not name a package file (got '$deb')"
echo "package: $deb (built in $deb_s s after the release build)"
run dpkg-deb --info "$deb"

installed=1
run "${SUDO[@]}" dpkg -i "$deb"
listing=$(dpkg -L keyturn)
for f in /usr/bin/keyturn \
    /usr/share/man/man1/keyturn.1.gz \
    /usr/share/man/man1/keyturn-rotate.1.gz \
    /usr/share/man/man1/keyturn-keys-add.1.gz \
    /usr/share/bash-completion/completions/keyturn \
    /usr/share/zsh/vendor-completions/_keyturn \
    /usr/share/fish/vendor_completions.d/keyturn.fish \
    /usr/share/doc/keyturn/README.md \
    /usr/share/doc/keyturn/copyright; do
    grep -qx "$f" <<<"$listing" || fail "dpkg -L keyturn does not list $f"
    [ -s "$f" ] || fail "$f is listed but missing or empty"
done
echo "dpkg -L keyturn lists the binary, the man pages, the three completions and the docs"

# Stripped: no symbol table, no debug sections.
if readelf -S --wide /usr/bin/keyturn | grep -qE '\.symtab|\.debug_'; then
    fail "/usr/bin/keyturn is not stripped"
fi
echo "/usr/bin/keyturn is stripped"

try_binary /usr/bin/keyturn "$tmp/demo-deb"
if command -v man >/dev/null 2>&1; then
    run man -w keyturn
    run man -w keyturn-status
    # The page renders without errors (groff is man-db's dependency).
    MANWIDTH=80 man -l /usr/share/man/man1/keyturn.1.gz 2>&1 >/dev/null | grep . &&
        fail "man -l keyturn.1.gz printed errors"
fi
# The bash completion loads and registers itself.
bash -c 'source /usr/share/bash-completion/completions/keyturn && complete -p keyturn' ||
    fail "the bash completion does not load"

run "${SUDO[@]}" dpkg --purge keyturn
installed=
[ ! -e /usr/bin/keyturn ] || fail "/usr/bin/keyturn is still there after dpkg --purge"

step "c. sizes"
bin_bytes=$(stat -c %s "$target_dir/release/keyturn")
deb_bytes=$(stat -c %s "$deb")
echo "stripped release binary: $bin_bytes bytes ($(numfmt --to=iec-i --suffix=B "$bin_bytes"))"
echo "Debian package:          $deb_bytes bytes ($(numfmt --to=iec-i --suffix=B "$deb_bytes"))"
echo "release build (cargo install): $build_s s; package: $deb_s s; whole check: $((SECONDS - start)) s"
echo "package check passed"
