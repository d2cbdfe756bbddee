#!/usr/bin/env bash
# Sets up and runs all of MOC on this machine: a local Redis, web (gunicorn), websockets
# (uvicorn), nginx in front of both, a Celery worker for the default queue and one per
# device queue, and beat. Ctrl-C stops everything. Safe to run again: set-up steps that
# are already done are skipped.
#
# Usage: scripts/run.sh             set up, then run in the foreground
#        scripts/run.sh --procfile  print the Procfile this environment would run, and exit
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
#   MOC_VAR_DIR=./var        SQLite database, secret key, Redis data, logs, generated configs
#   MOC_MODEL_ROOTS          folders of model files (comma list); default var/models
#   MOC_DEMO_MODELS=yes      make the demo models in the first model root (no to skip)
#   MOC_ADMIN_USER, MOC_ADMIN_PASSWORD
#                            the first admin; without a password one is generated and printed
# plus everything moc_site/settings.py reads (DATABASE_URL, DEBUG, ALLOWED_HOSTS, ...).
# A .env file in the repository root is read too (by honcho, for the processes it starts).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

mode=run
case ${1:-} in
  "") ;;
  --procfile) mode=procfile ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

# --- configuration -------------------------------------------------------------------
# honcho reads .env for the processes it starts; read it here too, so that the set-up
# steps (migrate above all) see the same database as the processes.
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
# Every process writes its metrics here and /metrics merges them; files left by a
# previous run describe processes that no longer exist, so each start clears them.
export PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$MOC_VAR_DIR/prometheus}
export MOC_PUBLIC_URL=${MOC_PUBLIC_URL:-http://127.0.0.1:$MOC_PORT}
export PATH="$ROOT/.venv/bin:$PATH"
export VIRTUAL_ENV="$ROOT/.venv"

for port in MOC_PORT MOC_WEB_PORT MOC_WS_PORT MOC_DEVICE_WORKER_THREADS; do
  [[ ${!port} =~ ^[0-9]+$ ]] || die "$port must be a number, got '${!port}'"
done

# Paths inside the repository are written relative to it, so the Procfile printed for the
# defaults is the same on every machine (honcho runs every process from the repository root).
rel() {
  if [[ $1 == "$ROOT/"* ]]; then printf '%s' "${1#"$ROOT"/}"; else printf '%s' "$1"; fi
}
# nginx wants absolute paths for its prefix and configuration file.
abs_expr() {
  # shellcheck disable=SC2016 # $PWD is for the shell that runs the Procfile line
  if [[ $1 == /* ]]; then printf '%s' "$1"; else printf '"$PWD/%s"' "$1"; fi
}
VAR_REL=$(rel "$MOC_VAR_DIR")
NGINX_DIR=$MOC_VAR_DIR/nginx

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
    [[ -x .venv/bin/python ]] || die "no .venv yet: run scripts/run.sh once without --procfile to set up"
    MOC_DEVICE_QUEUES=$(.venv/bin/python manage.py fleet_devices --queues) ||
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

procfile() {
  echo "# The processes scripts/run.sh starts under honcho (generated by scripts/run.sh --procfile)."
  echo "# Start MOC with scripts/run.sh: it prepares the database, nginx's config and var/ first."
  if [[ $redis_local == yes ]]; then
    echo "redis: redis-server deploy/redis/redis.conf --port $redis_port --dir $VAR_REL/redis"
  fi
  echo "web: gunicorn moc_site.wsgi:application --bind 127.0.0.1:$MOC_WEB_PORT --workers 2 --threads 4" \
    "--worker-class gthread --config deploy/gunicorn.conf.py"
  # No per-message deflate on websockets: it compresses each telemetry message once per client.
  echo "ws: uvicorn moc_site.asgi:application --host 127.0.0.1 --port $MOC_WS_PORT --ws auto" \
    "--ws-per-message-deflate false --lifespan off --proxy-headers --forwarded-allow-ips 127.0.0.1"
  echo "proxy: nginx -e stderr -p $(abs_expr "$VAR_REL/nginx/") -c $(abs_expr "$VAR_REL/nginx/nginx.conf")"
  echo "worker_default: celery -A moc_site worker -Q default -n default@%h --concurrency 2 --loglevel INFO"
  # A GPU's worker sees only its GPU (CUDA numbers it 0), in NVML's order (PCI bus id), so the
  # models it loads land on its own device; NVML, which samples every GPU, ignores the mask.
  local pin
  for queue in "${device_queues[@]}"; do
    pin=""
    if [[ $queue == gpu.* ]]; then pin="env CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=${queue##*.} "; fi
    echo "worker_${queue//[.-]/_}: ${pin}celery -A moc_site worker -Q $queue -n $queue@%h" \
      "--concurrency $MOC_DEVICE_WORKER_THREADS --pool threads --loglevel INFO"
  done
  echo "beat: celery -A moc_site beat --loglevel INFO" \
    "--scheduler django_celery_beat.schedulers:DatabaseScheduler --pidfile $VAR_REL/celerybeat.pid"
}

if [[ $mode == procfile ]]; then
  read_device_queues
  procfile
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

mkdir -p "$MOC_VAR_DIR" "$NGINX_DIR" "$PROMETHEUS_MULTIPROC_DIR"
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
fi

python manage.py nginx_conf "$NGINX_DIR" --listen "$MOC_LISTEN:$MOC_PORT" \
  --web "127.0.0.1:$MOC_WEB_PORT" --ws "127.0.0.1:$MOC_WS_PORT"
nginx -t -q -e stderr -p "$NGINX_DIR/" -c "$NGINX_DIR/nginx.conf" || die "nginx rejected $NGINX_DIR/nginx.conf"

procfile >"$MOC_VAR_DIR/Procfile"

url="http://$([[ $MOC_LISTEN == 0.0.0.0 ]] && echo 127.0.0.1 || echo "$MOC_LISTEN"):$MOC_PORT/"
cat >&2 <<EOF

  MOC is starting: open $url
  (processes: $(grep -c '^[A-Za-z0-9_-]*:' "$MOC_VAR_DIR/Procfile"); logs below; Ctrl-C stops them all)

EOF
exec honcho start -f "$MOC_VAR_DIR/Procfile" -d "$ROOT"
