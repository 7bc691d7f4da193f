#!/usr/bin/env bash
# The web page and its browser tests: Node packages, the build, and Debian's Chromium.
#
#   scripts/web.sh chromium   install Debian's chromium with apt when /usr/bin/chromium is absent
#   scripts/web.sh build      npm ci (when package-lock.json changed) and npm run build
#   scripts/web.sh ensure     build only when web/dist/demo is missing (make run / make dev)
#   scripts/web.sh unit       the vitest unit tests
#   scripts/web.sh prepare    chromium + build + unit: what `make test` runs before pytest
#
# Node.js (>= 20) and npm are needed for build/unit/prepare; Chromium is installed, never a
# browser build of Playwright's own (playwright-core only drives /usr/bin/chromium).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WEB="$ROOT/web"
VENV="${VENV:-$ROOT/.venv}"

log() { echo "web: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_chromium() {
  if [ -x /usr/bin/chromium ]; then return 0; fi
  log "installing Debian's chromium"
  as_root apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
}

need_node() {
  if ! command -v npm >/dev/null 2>&1; then
    log "Node.js >= 20 with npm is needed to build the web page (https://nodejs.org)"
    return 1
  fi
}

npm_ci() {
  need_node
  local stamp="$WEB/node_modules/.atlas-lock"
  if [ ! -f "$stamp" ] || ! cmp -s "$WEB/package-lock.json" "$stamp"; then
    log "npm ci"
    (cd "$WEB" && npm ci --no-audit --no-fund >&2)
    cp "$WEB/package-lock.json" "$stamp"
  fi
}

build() {
  npm_ci
  log "npm run build"
  (cd "$WEB" && npm run build >&2)
}

ensure() {
  if [ -f "$WEB/dist/demo/index.html" ]; then return 0; fi
  if command -v npm >/dev/null 2>&1; then
    build
  else
    log "the demo page is not built and Node.js is missing: /demo will say so (the API works)"
  fi
}

unit() {
  npm_ci
  (cd "$WEB" && npm test)
}

prepare() {
  install_chromium
  build
  unit
}


case "${1:-}" in
  chromium) install_chromium ;;
  build) build ;;
  ensure) ensure ;;
  unit) unit ;;
  prepare) prepare ;;
  *)
    echo "usage: $0 {chromium|build|ensure|unit|prepare}" >&2
    exit 2
    ;;
esac
