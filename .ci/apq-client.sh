#!/usr/bin/env bash
# Apollo Client's own persisted-queries link against the release server: the
# APQ round trip over POST and over GET (`useGETForHashedQueries`), asserted
# on what went over the wire. Installs the pinned npm packages of
# tests/apq-client/.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd tests/apq-client && npm install --no-audit --no-fund --loglevel=error)

source .ci/start-server.sh
node --test tests/apq-client/
