#!/usr/bin/env bash
# `make dev`: the whole realtime stack on this machine, from a fresh clone.
#
# Starts livekit-server (built once per machine by scripts/livekit.sh), `atlas serve` and
# `atlas agent dev` on loopback, creates an API key, and prints the URLs and the key. Ctrl-C
# stops all three. Data (SQLite, faces) lives in $ATLAS_DATA_DIR (default ./atlas-data).
#
#   ATLAS_DEV_PORT      API port (default 8000)
#   ATLAS_DEV_LIVEKIT_PORT  LiveKit port (default 7880; RTC on the next two)
#   ATLAS_DEMO          exported as 1 unless set: `atlas serve` serves its demo page with it
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
ATLAS="$VENV/bin/atlas"
API_PORT="${ATLAS_DEV_PORT:-8000}"
LK_PORT="${ATLAS_DEV_LIVEKIT_PORT:-7880}"
RUN_DIR="$(mktemp -d /tmp/atlas-dev.XXXXXX)"
PIDS=()

stop() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$RUN_DIR"
}
trap stop EXIT INT TERM

# the demo page: built once when Node.js is there; the API serves without it otherwise
bash "$ROOT/scripts/web.sh" ensure || echo "dev: no demo page (Node.js >= 20 builds it)" >&2
LIVEKIT="$(bash "$ROOT/scripts/livekit.sh")"
export LIVEKIT_API_KEY="dev_$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
export LIVEKIT_API_SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
export LIVEKIT_URL="ws://127.0.0.1:$LK_PORT"
export ATLAS_DEMO="${ATLAS_DEMO:-1}"
export ATLAS_FACE_ALLOW_HTTP="${ATLAS_FACE_ALLOW_HTTP:-1}"  # http:// faces on loopback

"$LIVEKIT" --dev --bind 127.0.0.1 --node-ip 127.0.0.1 \
  --keys "$LIVEKIT_API_KEY: $LIVEKIT_API_SECRET" \
  --config-body "$(printf 'port: %s\nrtc:\n  tcp_port: %s\n  udp_port: %s\n  use_external_ip: false\n' \
    "$LK_PORT" "$((LK_PORT + 1))" "$((LK_PORT + 2))")" \
  >"$RUN_DIR/livekit.log" 2>&1 &
PIDS+=($!)

"$ATLAS" serve --host 127.0.0.1 --port "$API_PORT" >"$RUN_DIR/api.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$API_PORT/v1/health" >/dev/null 2>&1 && break
  sleep 0.2
done
KEY="$("$ATLAS" keys create --name "dev-$(date +%s)" | head -1)"

"$ATLAS" agent dev >"$RUN_DIR/agent.log" 2>&1 &
PIDS+=($!)

cat <<INFO

  Atlas realtime stack (Ctrl-C stops it; logs in $RUN_DIR)

  API          http://127.0.0.1:$API_PORT        (docs: /docs)
  Demo page    http://127.0.0.1:$API_PORT/demo   (ATLAS_DEMO=$ATLAS_DEMO)
  LiveKit      $LIVEKIT_URL    key $LIVEKIT_API_KEY
  API key      $KEY

  curl -H "Authorization: Bearer $KEY" -F face=@tests/fixtures/face.jpg -F mode=passthrough \\
       http://127.0.0.1:$API_PORT/v1/realtime/session

INFO
wait -n "${PIDS[@]}"
echo "dev: a process exited; see $RUN_DIR" >&2
