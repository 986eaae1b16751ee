#!/usr/bin/env bash
# No lost writes (issue 8, point 5): a release replica on PostgreSQL
# (.ci/pg-replicas.sh) under placeOrder load from 32 customers is SIGKILLed
# mid-load (tests/faults/kill.mjs load); a new replica starts on the same
# database, and the check phase reads the database for the invariants and
# retries the keys whose answer was lost.
set -euo pipefail
cd "$(dirname "$0")/.."

source .ci/pg-replicas.sh
export PSQL="$pg_bin/psql" KILL_STATE="$work/kill-state.json"

# A small pool keeps most of the 32 clients' requests waiting inside the
# server (for a connection, or in a transaction) when it is killed, rather
# than answered and on their way back. The load must not run out of stock:
# that would be a refusal, not a test.
start_replica killed --rate-limit false --db-max-connections 4
"$PSQL" "$COMMERCE_GRAPH_DATABASE_URL" -q -v ON_ERROR_STOP=1 \
  -c "UPDATE inventory SET available = 100000 WHERE product_id <= 8"
COMMERCE_GRAPH_URL="$url" COMMERCE_GRAPH_KILL_PID="$replica_pid" node tests/faults/kill.mjs load

start_replica restarted --rate-limit false
status=0
COMMERCE_GRAPH_URL="$url" node tests/faults/kill.mjs check || status=$?
if [ $status -ne 0 ]; then
  echo "== the killed replica's log"; tail -n 30 "$work/killed.log"
  echo "== the restarted replica's log"; tail -n 30 "$work/restarted.log"
fi
exit $status
