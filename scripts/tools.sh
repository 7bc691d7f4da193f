#!/usr/bin/env bash
# Prints the path of a pinned command-line tool the tests need, building it from its Go module
# once per machine:
#
#   scripts/tools.sh kustomize     # sigs.k8s.io/kustomize/kustomize/v5 (tests/deploy, k8s/)
#
# kustomize v5.8.2 is the newest release this machine's Go (1.26) builds without fetching a
# newer toolchain: v5.8.3 needs Go 1.27. GOTOOLCHAIN=local keeps Go from downloading one.
#
# Binaries are cached outside any checkout ($ATLAS_CACHE_DIR, default ~/.cache/atlas), as
# scripts/livekit.sh does, so every clone on the machine (CI's fresh one too) reuses them.
# ATLAS_KUSTOMIZE names a binary to use instead.
set -euo pipefail

KUSTOMIZE_VERSION="${ATLAS_KUSTOMIZE_VERSION:-v5.8.2}"
CACHE_DIR="${ATLAS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas}"

usage() {
  echo "usage: scripts/tools.sh kustomize" >&2
  exit 2
}

# go_build NAME MODULE VERSION BINARY: prints the cached path, building it on first use.
go_build() {
  local name=$1 module=$2 version=$3 binary=$4
  local target="$CACHE_DIR/bin/$name-$version"
  if [ ! -x "$target" ]; then
    if ! command -v go >/dev/null 2>&1; then
      echo "tools.sh: Go is needed to build $name $version (https://go.dev/dl)" >&2
      exit 1
    fi
    echo "tools.sh: building $name $version (once per machine)..." >&2
    mkdir -p "$CACHE_DIR/bin"
    local build
    build=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: `build` is local to this function
    trap "rm -rf '$build'" EXIT
    GOBIN="$build" GOTOOLCHAIN=local GOFLAGS=-mod=mod go install "$module@$version" >&2
    # rename is atomic: a concurrent caller sees no binary or a whole one
    mv "$build/$binary" "$target.tmp.$$" && mv "$target.tmp.$$" "$target"
  fi
  echo "$target"
}

case "${1:-}" in
  kustomize)
    if [ -n "${ATLAS_KUSTOMIZE:-}" ] && [ -x "$ATLAS_KUSTOMIZE" ]; then
      echo "$ATLAS_KUSTOMIZE"
      exit 0
    fi
    go_build kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" kustomize
    ;;
  *) usage ;;
esac
