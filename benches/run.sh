#!/usr/bin/env bash
# The whole load benchmark in one command: a throwaway PostgreSQL cluster on
# loopback (.ci/start-postgres.sh), one database seeded at scale 10 by
# `commerce-graph seed`, then benches/load.rs with this server AND the Apollo
# Server peer (../shared/peers/apollo-server) reading that same database,
# alternating, and the bare axum ceiling. Prints the Markdown table and writes
# it to target/bench/load.md.
#
#   bash benches/run.sh                 # the defaults of benches/load.rs
#   BENCH_DURATION=20 BENCH_ROUNDS=2 bash benches/run.sh
#   BENCH_BACKEND=sqlite bash benches/run.sh   # this server on SQLite, the peer on PostgreSQL
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
source .ci/start-postgres.sh
trap stop_postgres EXIT

database="${COMMERCE_GRAPH_PG_ADMIN_URL%/postgres}/bench"
as_postgres "$pg_bin/psql" -h "$pg_root" -p "$pg_port" -U postgres -d postgres -q \
  -c "CREATE DATABASE bench OWNER commerce"
echo "seeding $database at scale 10"
COMMERCE_GRAPH_LOG=warn target/release/commerce-graph seed --scale 10 --database-url "$database" </dev/null

export BENCH_PEER_DATABASE_URL="$database"
if [ "${BENCH_BACKEND:-postgres}" = postgres ]; then
  export BENCH_DATABASE_URL="$database"
fi
cargo bench --bench load </dev/null
