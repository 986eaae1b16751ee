# Sourced by the CI suites that need a running server: builds the release
# binary, starts `serve` on a free loopback port with a fresh SQLite database
# (migrated and seeded on start), waits until it is ready, and stops it when
# the calling script exits. Sets COMMERCE_GRAPH_URL, COMMERCE_GRAPH_BIN and
# COMMERCE_GRAPH_SERVER_LOG (the server's stderr). A script that needs its
# own EXIT trap calls `stop_server` from it.

cargo build --release --quiet
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
target/release/commerce-graph serve --listen "127.0.0.1:$port" \
  --database-url "sqlite://$work/commerce.db" >"$work/server.log" 2>&1 &
server=$!
stop_server() {
  kill $server 2>/dev/null || true
  wait $server 2>/dev/null || true
  rm -rf "$work"
}
trap stop_server EXIT

for _ in $(seq 1 240); do
  if curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 $server 2>/dev/null; then cat "$work/server.log"; echo "the server exited"; exit 1; fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null || { cat "$work/server.log"; echo "the server did not start"; exit 1; }

export COMMERCE_GRAPH_URL="http://127.0.0.1:$port"
export COMMERCE_GRAPH_BIN="$PWD/target/release/commerce-graph"
export COMMERCE_GRAPH_SERVER_LOG="$work/server.log"
