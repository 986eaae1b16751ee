#!/usr/bin/env bash
# A real CDN in front of the server: Debian's nginx (installed if missing)
# with proxy_cache, run unprivileged-style from a temporary prefix on a
# loopback port, before the release server started with a 2 s max-age cap so
# expiry is testable. tests/cdn/ then checks what the cache keeps, what it
# never keeps, and that a price change is served once the entry expires.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi

export COMMERCE_GRAPH_JWT_SECRET="cdn-test-secret-$(date +%s%N)"
export COMMERCE_GRAPH_MAX_CACHE_AGE=2
# Each request's start is logged with its x-request-id: the tests read the
# log to tell which requests reached the server.
export COMMERCE_GRAPH_LOG="info,tower_http=debug"
source .ci/start-server.sh

cdn="$(mktemp -d)"
cdn_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# nginx's workers run as nobody when started by root: they must reach the
# cache and temp folders (which nginx creates and hands to them).
chmod 755 "$cdn"
mkdir -p "$cdn/temp"
cat >"$cdn/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $cdn/nginx.pid;
error_log $cdn/error.log notice;
events { worker_connections 256; }
http {
  log_format cdn '\$request_method \$request_uri \$status cache=\$upstream_cache_status upstream=\$upstream_status';
  access_log $cdn/access.log cdn;
  client_body_temp_path $cdn/temp/body;
  proxy_temp_path $cdn/temp/proxy;
  fastcgi_temp_path $cdn/temp/fastcgi;
  uwsgi_temp_path $cdn/temp/uwsgi;
  scgi_temp_path $cdn/temp/scgi;

  # No proxy_cache_valid: how long an answer is kept is the server's
  # Cache-Control alone (no-store and private answers are never kept).
  proxy_cache_path $cdn/cache levels=1:2 keys_zone=graphql:1m max_size=64m inactive=10m use_temp_path=off;

  server {
    listen 127.0.0.1:$cdn_port;
    location / {
      proxy_pass $COMMERCE_GRAPH_URL;
      proxy_http_version 1.1;
      proxy_cache graphql;
      # The whole URI with its arguments: documentId, variables,
      # operationName and extensions all change the answer.
      proxy_cache_key \$scheme\$proxy_host\$request_uri;
      # An answer to a request with a token is never shared.
      proxy_cache_bypass \$http_authorization;
      proxy_no_cache \$http_authorization;
      # Expired entries are revalidated with If-None-Match (the ETag).
      proxy_cache_revalidate on;
      proxy_cache_lock on;
      add_header X-Cache-Status \$upstream_cache_status always;
    }
  }
}
EOF
/usr/sbin/nginx -t -q -p "$cdn" -c "$cdn/nginx.conf" -e "$cdn/error.log"
/usr/sbin/nginx -p "$cdn" -c "$cdn/nginx.conf" -e "$cdn/error.log" &
nginx=$!
stop_nginx() {
  kill $nginx 2>/dev/null || true
  wait $nginx 2>/dev/null || true
  rm -rf "$cdn"
}
trap 'stop_nginx; stop_server' EXIT

for _ in $(seq 1 40); do
  if curl -fsS "http://127.0.0.1:$cdn_port/health/live" >/dev/null 2>&1; then break; fi
  sleep 0.25
done
curl -fsS "http://127.0.0.1:$cdn_port/health/live" >/dev/null || { cat "$cdn/error.log"; echo "nginx did not start"; exit 1; }

export COMMERCE_GRAPH_CDN_URL="http://127.0.0.1:$cdn_port"
status=0
node --test tests/cdn/ || status=$?
if [ $status -ne 0 ]; then
  echo "== nginx access log"; cat "$cdn/access.log"
  echo "== nginx error log"; cat "$cdn/error.log"
fi
exit $status
