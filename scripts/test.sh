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
# in-process consumers keep no connection past a test (a kept one would block dropping the
# test database); tests/config/test_db_socket_connection.py sets it where it is tested
export SOCKET_DB_CONN_MAX_AGE=${SOCKET_DB_CONN_MAX_AGE:-0}
export SECRET_KEY=${SECRET_KEY:-test-secret-key-not-for-production}
export DATA_DIR=${DATA_DIR:-$(mktemp -d)}
mkdir -p "$DATA_DIR/static"
export ML_CACHE_DIR=${ML_CACHE_DIR:-$HOME/.cache/affect-ml}

# Is the PostgreSQL server accepting connections? pg_isready where it is installed, else a TCP
# connect with the venv's Python (a missing client is not an unreachable server).
postgres_reachable() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -d "$DATABASE_URL" 2>/dev/null
    return
  fi
  local py="$BIN/python"
  [ -x "$py" ] || py=python3
  "$py" - "$DATABASE_URL" <<'PY'
import socket, sys
from urllib.parse import urlparse

u = urlparse(sys.argv[1])
try:
    socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=2).close()
except (OSError, ValueError):
    sys.exit(1)
PY
}

# The project rule (tests/services.py): under CI a missing service fails; elsewhere the run
# goes on and the tests that need it do not pass.
case "$(printf %s "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
  1 | true | yes) in_ci=1 ;;
  *) in_ci=0 ;;
esac
if ! postgres_reachable; then
  if [ "$in_ci" = 1 ]; then
    echo "error: PostgreSQL is not reachable at $DATABASE_URL (CI=true: a missing service fails; start it, or set TEST_DATABASE_URL)" >&2
    exit 2
  fi
  echo "warning: PostgreSQL is not reachable at $DATABASE_URL; continuing outside CI, but the tests that use the database will error (start it, or set TEST_DATABASE_URL)" >&2
fi
exec "$BIN/pytest" "$@"
