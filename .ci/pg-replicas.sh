# Sourced by the CI suites that run release replicas on one PostgreSQL
# database: builds the release binary, starts a throwaway cluster
# (.ci/start-postgres.sh) with a database `commerce` for the app, and
# defines `start_replica NAME [ARGS…]`, which starts `serve` on a free
# loopback port (logging to $work/NAME.log) and waits until it is ready,
# setting $url and $replica_pid. Everything started is stopped, and the
# cluster removed, when the calling script exits. Exports
# COMMERCE_GRAPH_DATABASE_URL, COMMERCE_GRAPH_JWT_SECRET (the replicas'
# and the token command's) and COMMERCE_GRAPH_BIN.

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

start_replica() {
  local name=$1 port
  shift
  port="$(free_port)"
  "$COMMERCE_GRAPH_BIN" serve --listen "127.0.0.1:$port" "$@" </dev/null >>"$work/$name.log" 2>&1 &
  replica_pid=$!
  pids+=("$replica_pid")
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 240); do
    if curl -fsS "$url/health/ready" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$replica_pid" 2>/dev/null; then cat "$work/$name.log"; echo "replica $name exited"; exit 1; fi
    sleep 0.5
  done
  cat "$work/$name.log"; echo "replica $name did not start"; exit 1
}
