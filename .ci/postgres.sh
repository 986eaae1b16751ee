#!/usr/bin/env bash
# The whole test suite on PostgreSQL: a throwaway cluster on loopback
# (.ci/start-postgres.sh), then `cargo test` with
# COMMERCE_GRAPH_TEST_DATABASE_URL set, so every API test gets a database of
# its own on that server (tests/api/helpers.rs) and fails if it cannot reach
# it.
set -euo pipefail
cd "$(dirname "$0")/.."

source .ci/start-postgres.sh
trap stop_postgres EXIT

export COMMERCE_GRAPH_TEST_DATABASE_URL="$COMMERCE_GRAPH_PG_ADMIN_URL"
status=0
cargo test "$@" || status=$?
if [ $status -ne 0 ]; then
  echo "== PostgreSQL's log (last 100 lines)"; tail -n 100 "$pg_root/server.log"
fi
exit $status
