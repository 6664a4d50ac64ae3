#!/usr/bin/env bash
# Serve the product. Embedded default: SQLite under .data/, in-memory channel layer, tasks
# in-process, periodic jobs by `manage.py run_periodic` in the background. Set DATABASE_URL /
# REDIS_URL (and run workers and beat) for PostgreSQL + Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
export DATA_DIR=${DATA_DIR:-$PWD/.data}
mkdir -p "$DATA_DIR/static"
if [ -z "${SECRET_KEY:-}" ]; then
  # a per-installation key, generated once and kept out of git
  [ -s "$DATA_DIR/secret_key" ] || "$BIN/python" -c "import secrets; print(secrets.token_urlsafe(50))" > "$DATA_DIR/secret_key"
  export SECRET_KEY=$(cat "$DATA_DIR/secret_key")
fi
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
"$BIN/python" manage.py migrate --noinput
"$BIN/python" manage.py requeue_pending   # frames a previous run accepted but never analysed
# Demo accounts (published password) only on a database without users, i.e. the first start;
# an existing account is never touched. DEMO=0 skips this entirely.
if [ "${DEMO:-1}" != 0 ]; then
  "$BIN/python" manage.py seed_demo --if-no-users --base-url "http://$HOST:$PORT"
fi
if [ -z "${REDIS_URL:-}" ]; then
  # No Celery beat in the embedded default: run the periodic jobs (retention purge, stale
  # re-queue) beside the server. `exec` below turns this shell's pid ($$) into the server's, so
  # signals still go straight to the server, and the job runner exits when its parent, the server, does.
  "$BIN/python" manage.py run_periodic --interval "${PERIODIC_INTERVAL_SECONDS:-300}" --parent-pid $$ &
fi
echo "Serving on http://$HOST:$PORT/  (health: http://$HOST:$PORT/healthz)"
exec "$BIN/python" -m config.serve --host "$HOST" --port "$PORT"
