#!/usr/bin/env bash
# W6 (GRAPH.md): 10,000 WebSocket subscribers of one product, one price
# change. Raises the open-file limit (this process holds one end of every
# connection, the server the other), builds the release server, and runs the
# benchmark, which starts it. W6_SUBSCRIBERS changes the number.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(( ${W6_SUBSCRIBERS:-10000} * 2 + 1000 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ]; then
  ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
echo "open-file limit: $(ulimit -n)"
cargo build --release --quiet
cargo bench --quiet --bench w6_subscribers
