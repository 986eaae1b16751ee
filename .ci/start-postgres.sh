# Sourced by the CI suites that need PostgreSQL: installs Debian's
# `postgresql` if missing, creates a throwaway cluster in a temporary folder
# owned by the `postgres` user (initdb + pg_ctl: no systemd, no service), starts
# it on a free loopback port, and creates the role `commerce` (password
# authentication over TCP, allowed to create databases). Sets
# COMMERCE_GRAPH_PG_ADMIN_URL (the role's URL on the `postgres` database) and
# defines `stop_postgres`, which stops the cluster and removes it; the caller
# puts it in its EXIT trap. `halt_postgres` and `start_postgres` stop the
# server (fast: connections are ended) and start it again on the same port
# and data, for the outage test (exported, so `bash -c halt_postgres` works
# from a test's child process).

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

pg_root="$(mktemp -d)"
chown postgres:postgres "$pg_root"
chmod 700 "$pg_root"
pg_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_postgres() { runuser -u postgres -- "$@"; }

as_postgres "$pg_bin/initdb" -D "$pg_root/data" -U postgres -E UTF8 --locale=C.UTF-8 \
  --auth-local=trust --auth-host=scram-sha-256 >"$pg_root/initdb.log" 2>&1 \
  || { cat "$pg_root/initdb.log"; echo "initdb failed"; exit 1; }
# A test cluster: durability is traded for speed (nothing here outlives the run).
start_postgres() {
  as_postgres "$pg_bin/pg_ctl" -D "$pg_root/data" -l "$pg_root/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_root -c max_connections=300 \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null
}
halt_postgres() {
  as_postgres "$pg_bin/pg_ctl" -D "$pg_root/data" -m fast -w stop >/dev/null
}
export pg_bin pg_root pg_port
export -f as_postgres start_postgres halt_postgres
start_postgres || { cat "$pg_root/server.log"; echo "PostgreSQL did not start"; exit 1; }

stop_postgres() {
  halt_postgres 2>/dev/null || true
  rm -rf "$pg_root"
}

pg_password="cg-$(date +%s%N)"
as_postgres "$pg_bin/psql" -h "$pg_root" -p "$pg_port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE ROLE commerce LOGIN CREATEDB PASSWORD '$pg_password'"

export COMMERCE_GRAPH_PG_ADMIN_URL="postgres://commerce:$pg_password@127.0.0.1:$pg_port/postgres"
