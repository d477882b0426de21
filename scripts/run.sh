#!/usr/bin/env bash
# Set up and run Holdout on the embedded defaults (SQLite, a file-based broker) with a seeded demo:
# the web server on http://127.0.0.1:${PORT:-8000} and Celery workers for evaluations, latency and the sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DJANGO_SETTINGS_MODULE=leaderboard.settings
mkdir -p var
.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
.venv/bin/python manage.py seed_demo

.venv/bin/celery -A workers.app worker -Q evaluate --concurrency "${WORKER_CONCURRENCY:-1}" \
  --hostname evaluate@%h --loglevel INFO >var/worker.log 2>&1 &
evaluate_worker=$!
# Latency is timed alone: its own queue, one task at a time.
.venv/bin/celery -A workers.app worker -Q latency --concurrency 1 --hostname latency@%h \
  --loglevel INFO >var/latency-worker.log 2>&1 &
latency_worker=$!
# The periodic sweep (beat, -B) and its own queue, so it never waits behind evaluations.
.venv/bin/celery -A workers.app worker -B -Q sweep --pool solo --hostname sweep@%h \
  --schedule var/celerybeat-schedule --loglevel INFO >var/sweep-worker.log 2>&1 &
sweep_worker=$!
trap 'kill $evaluate_worker $latency_worker $sweep_worker 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
echo "Worker logs: var/worker.log, var/latency-worker.log, var/sweep-worker.log. Holdout: http://127.0.0.1:${PORT:-8000}/ (staff user demo / demo)"
.venv/bin/gunicorn leaderboard.wsgi --bind "127.0.0.1:${PORT:-8000}" --workers 2 --access-logfile -
