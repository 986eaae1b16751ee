#!/usr/bin/env bash
# GraphiQL in a real headless Chromium: installs Debian's chromium and the
# pinned playwright-core if missing, starts the release server on a fresh
# database (migrated and seeded on start) and runs tests/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm install --no-audit --no-fund --loglevel=error)

cargo build --release --quiet
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
target/release/commerce-graph serve --listen "127.0.0.1:$port" \
  --database-url "sqlite://$work/commerce.db" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 240); do
  if curl -fsS "http://127.0.0.1:$port/health/live" >/dev/null 2>&1; then break; fi
  if ! kill -0 $server 2>/dev/null; then cat "$work/server.log"; echo "the server exited"; exit 1; fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/health/live" >/dev/null || { cat "$work/server.log"; echo "the server did not start"; exit 1; }

COMMERCE_GRAPH_URL="http://127.0.0.1:$port" node --test tests/browser/
