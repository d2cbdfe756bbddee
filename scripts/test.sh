#!/usr/bin/env bash
# Sets up and runs every check MOC has: ruff (lint and format), Django's system check,
# the missing-migrations check, and the pytest suite. Arguments go to pytest:
#
#   scripts/test.sh                      everything
#   scripts/test.sh tests/fleet -k place  a part of the suite (the other checks still run)
#
# As root, installs the Debian packages the integration and browser tests use (Redis,
# Chromium and its driver, PostgreSQL, nginx, docker-compose, Prometheus's promtool, Alertmanager) when they are missing; as
# anyone else, says which are missing and goes on (those tests skip, saying why).
# Every check runs even after one fails; the exit status is pytest's when pytest failed,
# otherwise 1 when any other check failed, otherwise 0.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_venv test,demo
ensure_debs optional \
  redis-server:redis-server \
  chromium:chromium \
  chromium-driver:chromedriver \
  postgresql:pg_ctl \
  nginx:nginx \
  docker-compose:docker-compose \
  prometheus:promtool \
  prometheus-alertmanager:prometheus-alertmanager

export PATH="$PWD/.venv/bin:$PATH"
export VIRTUAL_ENV="$PWD/.venv"
# No colours from tools whose output goes to a CI log.
[[ -t 1 ]] || export NO_COLOR=1

failed=()
check() {
  local name=$1 rc=0
  shift
  log "$name"
  "$@" || rc=$?
  if ((rc != 0)); then
    failed+=("$name (exit $rc)")
  fi
  return 0
}

check "ruff check" ruff check .
check "ruff format --check" ruff format --check .
check "mypy (strict: domain packages, model formats)" mypy
check "lint-imports (imports run one way: pyproject.toml [tool.importlinter])" lint-imports
check "manage.py check" python manage.py check
check "manage.py makemigrations --check" python manage.py makemigrations --check --dry-run

log "pytest $*"
pytest_rc=0
python -m pytest "$@" || pytest_rc=$?
# 5 is "no tests collected": a suite that ran nothing has not passed.
((pytest_rc == 0)) || failed+=("pytest (exit $pytest_rc)")

# The races the database must settle run again on PostgreSQL, the production database.
# Only for the whole suite: a run narrowed by arguments is someone iterating on a part.
if (($# == 0)); then
  # shellcheck source=scripts/postgres.sh
  source scripts/postgres.sh
  pg_dir=$(mktemp -d /tmp/moc-pg.XXXXXX)
  trap 'stop_test_postgres "$pg_dir"' EXIT
  if database_url=$(start_test_postgres "$pg_dir"); then
    log "pytest -m postgres (on PostgreSQL)"
    pg_rc=0
    DATABASE_URL=$database_url python -m pytest -m postgres || pg_rc=$?
    ((pg_rc == 0)) || failed+=("pytest -m postgres on PostgreSQL (exit $pg_rc)")
    ((pytest_rc != 0)) || pytest_rc=$pg_rc
  elif [[ ${CI:-} == true ]]; then
    failed+=("PostgreSQL could not be started for the postgres-marked tests (see $pg_dir)")
  else
    warn "PostgreSQL is not available: the postgres-marked tests ran on SQLite only"
  fi
fi

if ((${#failed[@]} == 0)); then
  log "all checks passed"
  exit 0
fi
printf 'FAILED: %s\n' "${failed[@]}" >&2
if ((pytest_rc != 0)); then
  exit "$pytest_rc"
fi
exit 1
