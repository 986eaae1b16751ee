#!/usr/bin/env bash
# Subscriptions through their npm clients: graphql-ws (events after mutations
# over HTTP, the owner's order, a bad token's close code, limits), and the
# legacy subscriptions-transport-ws, graphql-sse and Apollo Client's
# multipart HttpLink (a price change reaches each).
set -euo pipefail
cd "$(dirname "$0")/.."

(cd tests/subscriptions && npm install --no-audit --no-fund --loglevel=error)

export COMMERCE_GRAPH_JWT_SECRET="subscriptions-test-secret-$(date +%s%N)"
source .ci/start-server.sh
node --test tests/subscriptions/
