#!/usr/bin/env bash
# Sets up and runs all of MOC on this machine: a local Redis, web (gunicorn), websockets
# (uvicorn), nginx in front of both, a Celery worker for the default queue and one per
# device queue, and beat, under supervisord. A process that dies is started again (at
# once, then, if it keeps dying as it starts, after 1, 2, 3... s, and after
# MOC_START_RETRIES such failures it stays down and says so); only Ctrl-C (SIGINT or
# SIGTERM to this command) stops everything: web first, then the workers (their soft
# shutdown), Redis last. Safe to run again: set-up steps that are already done are skipped.
#
# Usage: scripts/run.sh                set up, then run in the foreground
#        scripts/run.sh --print-config print the supervisord configuration this environment
#                                      would run, and exit
#
# While it runs: .venv/bin/supervisorctl -c var/supervisord.conf status (restart servers:web, ...).
# Each process's output is on the terminal, its name in front, and in var/log/<name>.log.
#
# Environment (all optional):
#   MOC_PORT=8000            the public port (nginx)
#   MOC_LISTEN=127.0.0.1     0.0.0.0 to reach MOC from other machines; then also list the
#                            name they use in ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS
#   MOC_WEB_PORT=8001        gunicorn, internal
#   MOC_WS_PORT=8002         uvicorn, internal
#   REDIS_URL=redis://127.0.0.1:6379/0
#                            a Redis on 127.0.0.1/localhost is started here on that port;
#                            any other host is used as it is (MOC_START_REDIS=no forces that)
#   MOC_DEVICES=auto         which devices this node offers: auto (NVIDIA GPUs through NVML,
#                            else the CPU), nvml, cpu, or simulated GPUs: sim:2x24GiB
#   MOC_NODE_NAME=<host>     this node's name in MOC and in its queue names
#   MOC_DEVICE_QUEUES        comma list; one Celery worker (thread pool) per queue; by default
#                            one per device found (gpu.<node>.<index>, or cpu.<node>.0)
#   MOC_DEVICE_WORKER_THREADS=4
#   MOC_START_RETRIES=5      how often a process that dies as it starts is tried again
#   MOC_VAR_DIR=./var        SQLite database, secret key, Redis data, logs, generated configs
#   MOC_MODEL_ROOTS          folders of model files (comma list); default var/models
#   MOC_DEMO_MODELS=yes      make the demo models in the first model root (no to skip)
#   MOC_ADMIN_USER, MOC_ADMIN_PASSWORD
#                            the first admin; without a password one is generated and printed
# plus everything moc_site/settings.py reads (DATABASE_URL, DEBUG, ALLOWED_HOSTS, ...).
# A .env file in the repository root is read too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

mode=run
case ${1:-} in
  "") ;;
  --print-config) mode=print ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

# --- configuration -------------------------------------------------------------------
# Read here, so that the set-up steps (migrate above all) see the same settings as the
# processes, which inherit this environment from supervisord.
if [[ -f .env ]]; then
  set -a
  # shellcheck source=/dev/null
  source .env
  set +a
fi
MOC_VAR_DIR=${MOC_VAR_DIR:-$ROOT/var}
[[ $MOC_VAR_DIR == /* ]] || MOC_VAR_DIR=$ROOT/$MOC_VAR_DIR
export MOC_VAR_DIR
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export MOC_PORT=${MOC_PORT:-8000}
MOC_LISTEN=${MOC_LISTEN:-127.0.0.1}
MOC_WEB_PORT=${MOC_WEB_PORT:-8001}
MOC_WS_PORT=${MOC_WS_PORT:-8002}
MOC_DEVICE_WORKER_THREADS=${MOC_DEVICE_WORKER_THREADS:-4}
MOC_DEVICE_QUEUES=${MOC_DEVICE_QUEUES:-}
MOC_START_RETRIES=${MOC_START_RETRIES:-5}
MOC_WORKER_SOFT_SHUTDOWN_S=${MOC_WORKER_SOFT_SHUTDOWN_S:-30}
# Every process writes its metrics here and /metrics merges them; files left by a
# previous run describe processes that no longer exist, so each start clears them.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$MOC_VAR_DIR/prometheus}
export MOC_PUBLIC_URL=${MOC_PUBLIC_URL:-http://127.0.0.1:$MOC_PORT}
export PATH="$ROOT/.venv/bin:$PATH"
export VIRTUAL_ENV="$ROOT/.venv"

for port in MOC_PORT MOC_WEB_PORT MOC_WS_PORT MOC_DEVICE_WORKER_THREADS MOC_START_RETRIES \
  MOC_WORKER_SOFT_SHUTDOWN_S; do
  [[ ${!port} =~ ^[0-9]+$ ]] || die "$port must be a number, got '${!port}'"
done

NGINX_DIR=$MOC_VAR_DIR/nginx
LOG_DIR=$MOC_VAR_DIR/log
CONF=$MOC_VAR_DIR/supervisord.conf
# supervisorctl reaches supervisord through this socket; a unix socket's path holds about 100
# bytes, so a deep var folder gets one in /tmp instead, named after it.
SOCKET=$MOC_VAR_DIR/supervisor.sock
if ((${#SOCKET} > 100)); then
  SOCKET=/tmp/moc-supervisor-$(printf '%s' "$MOC_VAR_DIR" | cksum | cut -d' ' -f1).sock
fi

# Start a local Redis only when REDIS_URL points at this machine.
redis_local=no
redis_port=6379
redis_auth=""
if [[ $REDIS_URL =~ ^redis://(([^@/]*)@)?(\[[^]/]*\]|[^:/]*)(:([0-9]+))?(/.*)?$ ]]; then
  redis_auth=${BASH_REMATCH[2]}
  redis_host=${BASH_REMATCH[3]}
  redis_port=${BASH_REMATCH[5]:-6379}
  case $redis_host in
    127.0.0.1 | localhost | "[::1]" | "") redis_local=yes ;;
  esac
fi
case ${MOC_START_REDIS:-auto} in
  auto) ;;
  no | false | 0) redis_local=no ;;
  *) die "MOC_START_REDIS must be auto or no, got '${MOC_START_REDIS}'" ;;
esac
if [[ $redis_local == yes && $redis_auth == *:?* ]]; then
  die "REDIS_URL has a password, but the Redis this script starts has none.
Drop the password from REDIS_URL, or run your own Redis and set MOC_START_REDIS=no."
fi

# One worker per device queue: the ones asked for, or one per device this node offers.
device_queues=()
read_device_queues() {
  if [[ -z $MOC_DEVICE_QUEUES ]]; then
    [[ -x .venv/bin/python ]] || die "no .venv yet: run scripts/run.sh once without --print-config to set up"
    # Listing devices makes no metrics; without this, the folder for them would have to exist.
    MOC_DEVICE_QUEUES=$(env -u PROMETHEUS_MULTIPROC_DIR .venv/bin/python manage.py fleet_devices --queues) ||
      die "could not list this node's devices (manage.py fleet_devices); check MOC_DEVICES"
  fi
  export MOC_DEVICE_QUEUES
  IFS=, read -r -a device_queues <<<"$MOC_DEVICE_QUEUES"
  local -A worker_names=()
  local queue name
  for queue in "${device_queues[@]}"; do
    [[ $queue =~ ^[A-Za-z0-9._-]+$ ]] ||
      die "MOC_DEVICE_QUEUES: '$queue' is not a queue name (letters, digits, '.', '_', '-')"
    name="worker_${queue//[.-]/_}"
    [[ -z ${worker_names[$name]:-} ]] || die "MOC_DEVICE_QUEUES: '$queue' and '${worker_names[$name]}' clash"
    worker_names[$name]=$queue
  done
}

# --- the processes ---------------------------------------------------------------------
# A process that dies within STARTSECS of starting counts as failing to start: supervisord
# tries it again after 1, 2, 3... s and gives up after MOC_START_RETRIES tries (the console
# says so loudly; the rest keeps running). One that ran longer is started again at once.
STARTSECS=10
names=() groups=() stopwaits=() environments=() commands=()

# program NAME GROUP STOPWAITSECS ENVIRONMENT COMMAND...: one supervisord program.
# STOPWAITSECS is how long it may take to stop after SIGTERM before it gets SIGKILL.
program() {
  local name=$1 group=$2 stopwait=$3 environment=$4 arg command=""
  shift 4
  for arg in "$@"; do command+="${command:+ }$(printf '%q' "$arg")"; done
  names+=("$name") groups+=("$group") stopwaits+=("$stopwait") environments+=("$environment")
  commands+=("${command//%/%%}") # supervisord expands %(name)s in commands
}

processes() {
  if [[ $redis_local == yes ]]; then
    program redis redis 30 "" redis-server "$ROOT/deploy/redis/redis.conf" --port "$redis_port" \
      --dir "$MOC_VAR_DIR/redis"
  fi
  # gunicorn lets requests in flight finish for its graceful_timeout (deploy/gunicorn.conf.py, 30 s).
  program web servers 40 "" gunicorn moc_site.wsgi:application --bind "127.0.0.1:$MOC_WEB_PORT" \
    --workers 2 --threads 4 --worker-class gthread --config deploy/gunicorn.conf.py
  # No per-message deflate on websockets: it compresses each telemetry message once per client.
  program ws servers 15 "" uvicorn moc_site.asgi:application --host 127.0.0.1 --port "$MOC_WS_PORT" \
    --ws auto --ws-per-message-deflate false --lifespan off --proxy-headers --forwarded-allow-ips 127.0.0.1
  program proxy servers 15 "" nginx -e stderr -p "$NGINX_DIR/" -c "$NGINX_DIR/nginx.conf"
  # A worker's SIGTERM lets its tasks run for MOC_WORKER_SOFT_SHUTDOWN_S, then hands what is
  # left back to Redis: give it that long and some.
  local worker_stop=$((MOC_WORKER_SOFT_SHUTDOWN_S + 30))
  program worker_default workers "$worker_stop" "" celery -A moc_site worker -Q default -n default@%h \
    --concurrency 2 --loglevel INFO
  # A GPU's worker sees only its GPU (CUDA numbers it 0), in NVML's order (PCI bus id), so the
  # models it loads land on its own device; NVML, which samples every GPU, ignores the mask.
  local queue pin
  for queue in "${device_queues[@]}"; do
    pin=""
    if [[ $queue == gpu.* ]]; then pin="CUDA_DEVICE_ORDER=\"PCI_BUS_ID\",CUDA_VISIBLE_DEVICES=\"${queue##*.}\""; fi
    program "worker_${queue//[.-]/_}" workers "$worker_stop" "$pin" celery -A moc_site worker -Q "$queue" \
      -n "$queue@%h" --concurrency "$MOC_DEVICE_WORKER_THREADS" --pool threads --loglevel INFO
  done
  program beat workers 15 "" celery -A moc_site beat --loglevel INFO \
    --scheduler django_celery_beat.schedulers:DatabaseScheduler --pidfile "$MOC_VAR_DIR/celerybeat.pid"
}

# The programs of one group, comma-separated.
group_members() {
  local i members=""
  for i in "${!names[@]}"; do
    if [[ ${groups[$i]} == "$1" ]]; then members+="${members:+,}${names[$i]}"; fi
  done
  printf '%s' "$members"
}

# supervisord's configuration. Groups stop one after the other, highest priority first, each
# group's programs together: the servers (no new work comes in), then the workers and beat
# (their soft shutdown hands work back through Redis), then Redis. They start the other way
# round, without waiting for each other.
supervisor_conf() {
  local width=0 name i
  for name in "${names[@]}"; do ((${#name} > width)) && width=${#name}; done
  cat <<EOF
; The processes scripts/run.sh runs under supervisord, for this machine and environment.
; Generated by scripts/run.sh (--print-config prints it): change the script, not this file.
; While MOC runs: supervisorctl -c $CONF status
; A program's SIGTERM goes to it alone, and it stops its own children (gunicorn's, nginx's and
; Celery's workers); the SIGKILL after its stopwaitsecs goes to all of them (killasgroup).

[supervisord]
nodaemon=true
directory=$ROOT
pidfile=$MOC_VAR_DIR/supervisord.pid
logfile=$LOG_DIR/supervisord.log
logfile_maxbytes=10MB
logfile_backups=3
childlogdir=$LOG_DIR
EOF
  # As root without user=, supervisord warns at every start that it did not drop privileges.
  if is_root; then echo "user=root"; fi
  cat <<EOF

[unix_http_server]
file=$SOCKET
chmod=0700

[supervisorctl]
serverurl=unix://$SOCKET

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

; Every program's output goes to its log file and, through this listener, to the terminal with
; the program's name in front; it also reports each crash and each program given up on.
[eventlistener:console]
command=python deploy/supervisor/console.py --width $width --startsecs $STARTSECS --startretries $MOC_START_RETRIES --conf $(printf '%q' "$CONF")
events=PROCESS_LOG,PROCESS_STATE
buffer_size=10000
autorestart=true
stdout_logfile=NONE
stderr_logfile=/dev/stdout
stderr_logfile_maxbytes=0
EOF
  local -A priorities=([redis]=100 [workers]=200 [servers]=300)
  for i in "${!names[@]}"; do
    cat <<EOF

[program:${names[$i]}]
command=${commands[$i]}
priority=${priorities[${groups[$i]}]}
autorestart=true
startsecs=$STARTSECS
startretries=$MOC_START_RETRIES
stopsignal=TERM
stopwaitsecs=${stopwaits[$i]}
killasgroup=true
redirect_stderr=true
stdout_logfile=$LOG_DIR/${names[$i]}.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3
stdout_events_enabled=true
EOF
    if [[ -n ${environments[$i]} ]]; then echo "environment=${environments[$i]}"; fi
  done
  # Redis is a group of its own: the one supervisord makes for a program in no group.
  local group
  for group in workers servers; do
    printf '\n[group:%s]\nprograms=%s\npriority=%s\n' "$group" "$(group_members "$group")" "${priorities[$group]}"
  done
}

if [[ $mode == print ]]; then
  read_device_queues
  processes
  supervisor_conf
  exit 0
fi

# --- set-up ----------------------------------------------------------------------------
ensure_venv demo
if [[ $redis_local == yes ]]; then
  ensure_debs required redis-server:redis-server nginx:nginx
else
  ensure_debs required nginx:nginx
fi

# A port already taken would only show up as one process dying among a screenful of logs.
port_busy() { (: <"/dev/tcp/$1/$2") 2>/dev/null; }
check_port() {
  local host=$1 port=$2 what=$3 hint=${4:-}
  if port_busy "$host" "$port"; then
    die "port $port on $host ($what) is already in use: is MOC (or something else) running?${hint:+
$hint}"
  fi
}
check_port "$([[ $MOC_LISTEN == 0.0.0.0 ]] && echo 127.0.0.1 || echo "$MOC_LISTEN")" "$MOC_PORT" \
  "MOC_PORT, nginx" "Set MOC_PORT to use another one."
check_port 127.0.0.1 "$MOC_WEB_PORT" "MOC_WEB_PORT, gunicorn"
check_port 127.0.0.1 "$MOC_WS_PORT" "MOC_WS_PORT, uvicorn"
if [[ $redis_local == yes ]]; then
  check_port 127.0.0.1 "$redis_port" "Redis" "Stop that Redis (a system one: systemctl stop redis-server), \
set REDIS_URL=redis://127.0.0.1:<other port>/0, or use it as it is with MOC_START_REDIS=no."
fi

mkdir -p "$MOC_VAR_DIR" "$NGINX_DIR" "$LOG_DIR" "$PROMETHEUS_MULTIPROC_DIR"
if [[ $redis_local == yes ]]; then mkdir -p "$MOC_VAR_DIR/redis"; fi
find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -type f -name '*.db' -delete
# Nothing of ours is running (the ports are free), so a pid file left here is stale, and its
# pid may belong to another process by now, which would stop beat from starting.
rm -f "$MOC_VAR_DIR/celerybeat.pid"

read_device_queues
python manage.py fleet_devices

log "migrating the database"
python manage.py migrate --noinput
log "collecting static files"
python manage.py collectstatic --noinput
python manage.py ensure_admin
# Small real models made here from text the project ships (nothing is downloaded); the first
# worker's scan registers them. Quick when they already exist.
if [[ ${MOC_DEMO_MODELS:-yes} == yes ]]; then
  log "making the demo models (skipped when they exist)"
  python manage.py models_demo || warn "could not make the demo models; MOC runs without them"
  python manage.py datasets_demo || warn "could not make the demo datasets; MOC runs without them"
fi
# The starter alert rules (GPU hot, node down, …), only those absent by name: an edited or disabled
# starter is left as it is, a deleted one comes back at the next start (disable it instead).
python manage.py alerts_defaults || warn "could not create the starter alert rules; MOC runs without them"
# Seen now: after a long stop the node still reads online with an old heartbeat, and beat's first
# sweep would call it lost (NodeLost, its placements lost) before its workers register again.
python manage.py fleet_devices --touch >/dev/null || warn "could not mark this node seen"

python manage.py nginx_conf "$NGINX_DIR" --listen "$MOC_LISTEN:$MOC_PORT" \
  --web "127.0.0.1:$MOC_WEB_PORT" --ws "127.0.0.1:$MOC_WS_PORT"
nginx -t -q -e stderr -p "$NGINX_DIR/" -c "$NGINX_DIR/nginx.conf" || die "nginx rejected $NGINX_DIR/nginx.conf"

processes
supervisor_conf >"$CONF"

url="http://$([[ $MOC_LISTEN == 0.0.0.0 ]] && echo 127.0.0.1 || echo "$MOC_LISTEN"):$MOC_PORT/"
cat >&2 <<EOF

  MOC is starting: open $url
  (processes: ${#names[@]}; their output below and in $LOG_DIR; Ctrl-C stops them all;
   a process that dies is started again; see them with: supervisorctl -c $CONF status)

EOF
# supervisord writes the console's lines by opening /dev/stdout anew. Where that is a file
# opened for writing rather than appending (scripts/run.sh >moc.log), those lines and
# supervisord's own would write over each other; opened for appending, they take turns at its end.
if [[ -f /dev/stdout ]]; then
  out=$(readlink "/proc/$$/fd/1")
  if [[ $(readlink "/proc/$$/fd/2") == "$out" ]]; then exec >>"$out" 2>&1; else exec >>"$out"; fi
fi
exec supervisord -c "$CONF"
