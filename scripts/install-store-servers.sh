#!/usr/bin/env bash
# Installs the object-store servers the store conformance suite and the end-to-end tests start on
# loopback (docs/object-stores.md, "Servers under test"), into target/store-servers/:
#
#   weed-<version>          SeaweedFS, an S3-compatible server in MinIO's role (Apache-2.0),
#                           linked from bin/weed
#   bin/fake-gcs-server     fake-gcs-server, an emulator of Google Cloud Storage's JSON API
#   azurite/                Azurite, Microsoft's Azure Storage emulator (node_modules/.bin/azurite-blob)
#
# Idempotent: each server is skipped when its pinned version is already there, so a second run takes
# a second. SeaweedFS is built from source (6 minutes on 2 cores) because `go install` refuses its
# module (its go.mod has replace directives); the binary is kept under target/, so only a clean
# checkout (or a new version below) builds it again. The Go build and module caches of that build are
# temporary directories, removed afterwards (about 2 GB that nothing else uses).
#
# A server that cannot be installed prints a note and the run goes on; the tests that need it then
# skip locally and fail under CI=true, naming this script (tests/src/stores/mod.rs). The downloads
# are tried three times (a registry's passing refusal should not fail CI), and why the last try
# failed (the command's last lines, the free disk space) is kept in
# target/store-servers/install-failures.log, which those tests print in their failure message:
# a CI log that shows only the tests still shows the cause.
set -euo pipefail
cd "$(dirname "$0")/.."

SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
FAKE_GCS_SERVER_VERSION=v1.56.1
AZURITE_VERSION=3.37.0

out=target/store-servers
mkdir -p "$out/bin"
out=$(cd "$out" && pwd)
failures="$out/install-failures.log"
rm -f "$failures"
# A note goes to stderr and, with the free space, to $failures: a full disk breaks cp, mkdir and
# mktemp as surely as a download. Writing the log may fail too (that disk); the run goes on.
note() {
    echo "note: $1; the tests that need it will say so" >&2
    { echo "$(date -u +%FT%TZ) $1"; df -h "$out" "${TMPDIR:-/tmp}" 2>&1; echo; } >>"$failures" 2>/dev/null || true
}

# `attempt NAME COMMAND...`: runs COMMAND up to three times (15 s, then 45 s apart). Each try's
# stderr is printed when it ends; the stdout of the try that succeeds is passed on. When the last
# try fails, NAME, the exit code and the last 20 lines of its output go to $failures (the
# caller's note adds the free space), and the function fails.
attempt() {
    local name=$1 log status=0 try
    shift
    log=$(mktemp -d -t sluice-install-XXXXXX) || return 1
    attempt_log=$log
    for try in 1 2 3; do
        status=0
        "$@" >"$log/out" 2>"$log/err" || status=$?
        cat "$log/err" >&2
        if [ "$status" = 0 ]; then
            cat "$log/out"
            rm -rf "$log"
            return 0
        fi
        [ "$try" = 3 ] || sleep $((try == 1 ? 15 : 45))
    done
    {
        echo "$(date -u +%FT%TZ) $name failed 3 times (exit code $status); its last lines:"
        cat "$log/out" "$log/err" | tail -n 20
        echo
    } >>"$failures" 2>/dev/null
    rm -rf "$log"
    return 1
}

# Each step ends in `|| return 1`: `set -e` does not apply inside a function called from `||`.
# Go builds in throw-away caches, removed on exit (they are read-only files: chmod before rm).
# An interrupted `attempt` leaves its temporary directory: removed on exit too.
go_tmp=""
attempt_log=""
cleanup() {
    if [ -n "$go_tmp" ]; then
        chmod -R u+w "$go_tmp" 2>/dev/null || true
        rm -rf "$go_tmp"
    fi
    if [ -n "$attempt_log" ]; then
        rm -rf "$attempt_log"
    fi
}
trap cleanup EXIT
go_setup() {
    if [ -z "$go_tmp" ]; then
        go_tmp=$(mktemp -d -t sluice-go-XXXXXX) || { go_tmp=""; return 1; }
        mkdir -p "$go_tmp/cache" "$go_tmp/mod" || return 1
    fi
}
go_env() {
    env GOCACHE="$go_tmp/cache" GOMODCACHE="$go_tmp/mod" GOFLAGS=-buildvcs=false "$@"
}
build_in() {
    local dir=$1
    shift
    (cd "$dir" && "$@")
}

install_seaweedfs() {
    local binary="$out/weed-$SEAWEEDFS_VERSION"
    # The tests run bin/weed: the pinned version, whichever others are still cached.
    [ -x "$binary" ] && ln -sfn "../weed-$SEAWEEDFS_VERSION" "$out/bin/weed" && return 0
    echo "building SeaweedFS $SEAWEEDFS_VERSION (about 6 minutes on 2 cores)" >&2
    go_setup || return 1
    local dir
    attempt "go mod download SeaweedFS $SEAWEEDFS_VERSION" \
        go_env go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" \
        >"$go_tmp/seaweedfs.json" || return 1
    dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$go_tmp/seaweedfs.json" | tail -n 1) || return 1
    [ -n "$dir" ] && [ -d "$dir" ] || return 1
    cp -r "$dir" "$go_tmp/seaweedfs" || return 1
    chmod -R u+w "$go_tmp/seaweedfs" || return 1
    # -s -w: no symbol table or DWARF, which the tests do not need.
    # The build downloads SeaweedFS's own dependencies, so it is tried again too.
    attempt "go build SeaweedFS $SEAWEEDFS_VERSION" \
        build_in "$go_tmp/seaweedfs" go_env go build -trimpath -ldflags='-s -w' -o "$binary.partial" ./weed \
        || return 1
    mv "$binary.partial" "$binary" || return 1
    ln -sfn "../weed-$SEAWEEDFS_VERSION" "$out/bin/weed"
}

install_fake_gcs_server() {
    local binary="$out/bin/fake-gcs-server"
    local stamp="$out/bin/.fake-gcs-server-$FAKE_GCS_SERVER_VERSION"
    [ -x "$binary" ] && [ -f "$stamp" ] && return 0
    go_setup || return 1
    attempt "go install fake-gcs-server $FAKE_GCS_SERVER_VERSION" \
        go_env env GOBIN="$out/bin" go install -trimpath -ldflags='-s -w' \
        "github.com/fsouza/fake-gcs-server@$FAKE_GCS_SERVER_VERSION" || return 1
    rm -f "$out"/bin/.fake-gcs-server-*
    touch "$stamp"
}

install_azurite() {
    local dir="$out/azurite"
    [ -x "$dir/node_modules/.bin/azurite-blob" ] \
        && [ "$(node -p "require('$dir/node_modules/azurite/package.json').version" 2>/dev/null)" = "$AZURITE_VERSION" ] \
        && return 0
    mkdir -p "$dir" || return 1
    attempt "npm install Azurite $AZURITE_VERSION" \
        npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --omit=dev \
        "azurite@$AZURITE_VERSION" >/dev/null
}

if command -v go >/dev/null; then
    install_seaweedfs || note "SeaweedFS $SEAWEEDFS_VERSION did not build"
    install_fake_gcs_server || note "fake-gcs-server $FAKE_GCS_SERVER_VERSION did not install"
else
    note "go is missing (SeaweedFS and fake-gcs-server are built with Go 1.24 or newer)"
fi
if command -v npm >/dev/null; then
    install_azurite || note "Azurite $AZURITE_VERSION did not install"
else
    note "npm is missing (Azurite is an npm package; apt-get install nodejs npm)"
fi
