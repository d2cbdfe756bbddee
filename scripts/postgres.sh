# shellcheck shell=bash
# start_test_postgres DIR: a throwaway PostgreSQL cluster on a free loopback port, for the
# tests marked `postgres`. Prints the DATABASE_URL on stdout; stop it with stop_test_postgres DIR.
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.

_pg_bin() {
  local dir
  dir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  [[ -n $dir && -x $dir/initdb ]] && printf '%s' "$dir"
}

_pg_as_owner() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_test_postgres() {
  local dir=$1 bin port
  bin=$(_pg_bin) || return 1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  if is_root; then chown postgres: "$dir"; fi
  _pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 || return 1
  _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-h 127.0.0.1 -p $port -k $dir -F" start >/dev/null || return 1
  printf 'postgres://postgres@127.0.0.1:%s/moc' "$port"
}

stop_test_postgres() {
  local dir=$1 bin
  bin=$(_pg_bin) || return 0
  [[ -d $dir/data ]] && _pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$dir"
}
