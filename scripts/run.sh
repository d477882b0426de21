#!/usr/bin/env bash
# Set up and run Holdout on the embedded defaults (SQLite, a file-based broker) with a seeded demo:
# the web server on http://127.0.0.1:${PORT:-8000} and one Celery worker with the periodic sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DJANGO_SETTINGS_MODULE=leaderboard.settings
mkdir -p var
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
.venv/bin/python manage.py seed_demo

.venv/bin/celery -A workers.app worker -B -Q evaluate --concurrency "${WORKER_CONCURRENCY:-1}" \
  --hostname evaluate@%h --schedule var/celerybeat-schedule --loglevel INFO >var/worker.log 2>&1 &
evaluate_worker=$!
# Latency is timed alone: its own queue, one task at a time.
.venv/bin/celery -A workers.app worker -Q latency --concurrency 1 --hostname latency@%h \
  --loglevel INFO >var/latency-worker.log 2>&1 &
latency_worker=$!
trap 'kill $evaluate_worker $latency_worker 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
echo "Worker logs: var/worker.log, var/latency-worker.log. Holdout: http://127.0.0.1:${PORT:-8000}/ (staff user demo / demo)"
.venv/bin/gunicorn leaderboard.wsgi --bind "127.0.0.1:${PORT:-8000}" --workers 2 --access-logfile -
