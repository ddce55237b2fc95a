#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests and prints its URL.
#   scripts/postgres.sh start DIR   -> prints postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop DIR
# Installs Debian's postgresql package when it is missing (as root, via apt).
set -euo pipefail

dir=${2:?usage: postgres.sh start|stop DIR}

find_bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$found" ] && [ -x "$found/initdb" ] && echo "$found"
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$1" in
start)
  bin=$(find_bin || true)
  if [ -z "$bin" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "PostgreSQL is missing: install it with 'sudo apt-get install postgresql'" >&2
      exit 1
    fi
    echo "installing PostgreSQL from Debian's packages..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends postgresql >&2
    bin=$(find_bin)
  fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  # A free port: ask the kernel where python3 is at hand, otherwise take a random high one.
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((30000 + RANDOM % 20000)))
  if ! as_postgres "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1; then
    echo "initdb failed:" >&2
    cat "$dir/initdb.log" >&2
    exit 1
  fi
  if ! as_postgres "$bin/pg_ctl" -D "$dir/data" \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" \
    -l "$dir/log" -w start >&2; then
    echo "PostgreSQL did not start:" >&2
    cat "$dir/log" >&2
    exit 1
  fi
  echo "postgres://postgres@127.0.0.1:$port/postgres"
  ;;
stop)
  bin=$(find_bin)
  as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast stop >&2 || true
  ;;
*)
  echo "usage: postgres.sh start|stop DIR" >&2
  exit 2
  ;;
esac
