#!/usr/bin/env bash
# Run the whole test suite against real services: PostgreSQL for the database tests, Redis
# for the channel layer and Celery broker, real worker subprocesses, real WebSockets.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
export REDIS_URL=$TEST_REDIS_URL
export DB_CONN_MAX_AGE=${DB_CONN_MAX_AGE:-0}
export SECRET_KEY=${SECRET_KEY:-test-secret-key-not-for-production}
export DATA_DIR=${DATA_DIR:-$(mktemp -d)}
mkdir -p "$DATA_DIR/static"
export ML_CACHE_DIR=${ML_CACHE_DIR:-$HOME/.cache/affect-ml}
if ! pg_isready -q -d "$DATABASE_URL" 2>/dev/null; then
  echo "error: PostgreSQL is not reachable at $DATABASE_URL (start it, or set TEST_DATABASE_URL)" >&2
  exit 2
fi
exec "$BIN/pytest" "$@"
