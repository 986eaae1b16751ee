#!/usr/bin/env bash
# Two replicas on one PostgreSQL database (issue 8, point 3): a throwaway
# cluster (.ci/start-postgres.sh), a database for the app, two release
# servers on it (A seeds it on start, then B starts), then tests/replicas/
# through the npm graphql-ws client: events, registrations and cache purges
# cross from one replica to the other.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd tests/replicas && npm install --no-audit --no-fund --loglevel=error)
cargo build --release --quiet

source .ci/start-postgres.sh
work="$(mktemp -d)"
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_postgres
  rm -rf "$work"
}
trap stop_all EXIT

as_postgres "$pg_bin/psql" -h "$pg_root" -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE DATABASE commerce OWNER commerce"
export COMMERCE_GRAPH_DATABASE_URL="${COMMERCE_GRAPH_PG_ADMIN_URL%/postgres}/commerce"
export COMMERCE_GRAPH_JWT_SECRET="replicas-test-secret-$(date +%s%N)"
export COMMERCE_GRAPH_BIN="$PWD/target/release/commerce-graph"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Starts a replica named $1 and waits until it is ready; sets $url.
start_replica() {
  local name=$1 port
  port="$(free_port)"
  "$COMMERCE_GRAPH_BIN" serve --listen "127.0.0.1:$port" >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 240); do
    if curl -fsS "$url/health/ready" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/$name.log"; echo "replica $name exited"; exit 1; fi
    sleep 0.5
  done
  cat "$work/$name.log"; echo "replica $name did not start"; exit 1
}

start_replica a
export COMMERCE_GRAPH_URL_A="$url"
start_replica b
export COMMERCE_GRAPH_URL_B="$url"

status=0
node --test tests/replicas/ || status=$?
if [ $status -ne 0 ]; then
  echo "== replica A's log"; tail -n 50 "$work/a.log"
  echo "== replica B's log"; tail -n 50 "$work/b.log"
fi
exit $status
