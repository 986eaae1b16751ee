#!/usr/bin/env bash
# graphql-http's GraphQL-over-HTTP audits (`serverAudits`) against the release
# server with its defaults (CSRF prevention on): every MUST passes, and the
# result of every audit is printed (see tests/http-audit/audit.test.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."

(cd tests/http-audit && npm install --no-audit --no-fund --loglevel=error)

source .ci/start-server.sh
node --test tests/http-audit/
