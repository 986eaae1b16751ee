#!/usr/bin/env bash
# GraphiQL in a real headless Chromium: installs Debian's chromium and the
# pinned playwright-core if missing, starts the release server and runs
# tests/browser/. The tests register documents with an admin token they mint
# with the binary, so the server and they share a JWT secret.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm install --no-audit --no-fund --loglevel=error)

export COMMERCE_GRAPH_JWT_SECRET="browser-test-secret-$(date +%s%N)"
source .ci/start-server.sh
node --test tests/browser/
