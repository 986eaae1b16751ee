#!/usr/bin/env bash
# Copies GraphiQL and React's browser builds into assets/graphiql/, from the
# npm packages at the pinned versions below. The files are committed and
# compiled into the binary, so GraphiQL never loads anything from a CDN.
# Run it again only to change versions (then update ASSET_VERSION in
# src/http/graphiql.rs; a unit test there compares it with GRAPHIQL below).
set -euo pipefail

GRAPHIQL=3.9.0   # the last major version with a UMD build
REACT=18.3.1     # the last React with UMD builds

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/assets/graphiql"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null
for archive in "graphiql-$GRAPHIQL" "react-$REACT" "react-dom-$REACT"; do
  package="${archive%-*}"
  mkdir -p "$package"
  tar xzf "$archive.tgz" -C "$package"
done

mkdir -p "$out"
# Source maps are not shipped: drop the comment that would make devtools ask for them.
sed '/sourceMappingURL=/d' graphiql/package/graphiql.min.js > "$out/graphiql.min.js"
cp graphiql/package/graphiql.min.css "$out/graphiql.min.css"
cp react/package/umd/react.production.min.js "$out/react.production.min.js"
cp react-dom/package/umd/react-dom.production.min.js "$out/react-dom.production.min.js"
cp graphiql/package/LICENSE "$out/LICENSE-graphiql"
cp react/package/LICENSE "$out/LICENSE-react"
cp react-dom/package/LICENSE "$out/LICENSE-react-dom"
echo "vendored graphiql $GRAPHIQL and react $REACT into $out"
