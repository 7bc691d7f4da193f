#!/usr/bin/env bash
# Prints the path of a livekit-server binary, building it from its Go module once per machine.
#
# Version: v1.13.5, the newest release whose build needs nothing but the Go module proxy.
# v1.13.6 to v1.13.11 replace pion/webrtc, dtls and ice with LiveKit's "-warp" forks, and the
# proxy refuses those fork versions (403 "not available"), so they cannot be built here.
# It is the same 1.13 line as the newest release, so it matches today's client SDKs.
#
# The binary is cached outside any checkout ($ATLAS_CACHE_DIR, default ~/.cache/atlas), so every
# clone on the machine (CI's fresh one too) reuses it; Go's own module cache makes a rebuild cheap.
set -euo pipefail

LIVEKIT_VERSION="${ATLAS_LIVEKIT_VERSION:-v1.13.5}"
CACHE_DIR="${ATLAS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atlas}"
BIN="$CACHE_DIR/bin/livekit-server-$LIVEKIT_VERSION"

if [ -n "${ATLAS_LIVEKIT_SERVER:-}" ] && [ -x "$ATLAS_LIVEKIT_SERVER" ]; then
  echo "$ATLAS_LIVEKIT_SERVER"
  exit 0
fi

if [ ! -x "$BIN" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "livekit.sh: Go is needed to build livekit-server $LIVEKIT_VERSION (https://go.dev/dl)" >&2
    exit 1
  fi
  echo "livekit.sh: building livekit-server $LIVEKIT_VERSION (once per machine)..." >&2
  mkdir -p "$CACHE_DIR/bin"
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  GOBIN="$build" GOFLAGS=-mod=mod go install \
    "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION" >&2
  mv "$build/server" "$BIN"
fi
echo "$BIN"
