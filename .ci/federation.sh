#!/usr/bin/env bash
# commerce-graph under a real Apollo gateway, beside a second (Node) subgraph:
# composition with @apollo/composition and @theguild/federation-composition,
# cross-subgraph queries, and authorization through `_entities`.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd tests/federation && npm install --no-audit --no-fund --loglevel=error)
cargo build --release --quiet

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export COMMERCE_GRAPH_JWT_SECRET="federation-test-secret-$(date +%s%N)"
export COMMERCE_GRAPH_ROUTER_SECRET="router-secret-$(date +%s%N)"
target/release/commerce-graph serve --listen "127.0.0.1:$port" \
  --database-url "sqlite://$work/commerce.db" >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 240); do
  if curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 $server 2>/dev/null; then cat "$work/server.log"; echo "the server exited"; exit 1; fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null || { cat "$work/server.log"; echo "the server did not start"; exit 1; }

COMMERCE_GRAPH_URL="http://127.0.0.1:$port" \
COMMERCE_GRAPH_BIN="$PWD/target/release/commerce-graph" \
  node --test tests/federation/
