#!/usr/bin/env bash
# Two replicas on one PostgreSQL database (issue 8, point 3): a throwaway
# cluster and two release servers on one database (.ci/pg-replicas.sh; A
# seeds it on start, then B starts), then tests/replicas/ through the npm
# graphql-ws client: events, registrations and cache purges cross from one
# replica to the other.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd tests/replicas && npm install --no-audit --no-fund --loglevel=error)
source .ci/pg-replicas.sh

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
