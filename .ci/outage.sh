#!/usr/bin/env bash
# A database outage under two replicas (issue 8, point 4): two release
# servers on one PostgreSQL database (.ci/pg-replicas.sh), with
# stale-if-error on and answers stale after 2 s; tests/faults/outage.test.mjs
# subscribes on A, stops PostgreSQL, checks what clients and the load
# balancer see, starts it again and checks that everything recovered.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd tests/faults && npm install --no-audit --no-fund --loglevel=error)
source .ci/pg-replicas.sh

start_replica a --stale-if-error 5m --max-cache-age 2
export COMMERCE_GRAPH_URL_A="$url"
start_replica b --stale-if-error 5m --max-cache-age 2
export COMMERCE_GRAPH_URL_B="$url"

status=0
node --test tests/faults/outage.test.mjs || status=$?
if [ $status -ne 0 ]; then
  echo "== replica A's log"; tail -n 50 "$work/a.log"
  echo "== replica B's log"; tail -n 50 "$work/b.log"
fi
exit $status
