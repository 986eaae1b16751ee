#!/usr/bin/env bash
# commerce-graph under a real Apollo gateway, beside a second (Node) subgraph:
# composition with @apollo/composition and @theguild/federation-composition,
# cross-subgraph queries, authorization through `_entities`, the router secret.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd tests/federation && npm install --no-audit --no-fund --loglevel=error)

export COMMERCE_GRAPH_JWT_SECRET="federation-test-secret-$(date +%s%N)"
export COMMERCE_GRAPH_ROUTER_SECRET="router-secret-$(date +%s%N)"
source .ci/start-server.sh
node --test tests/federation/
