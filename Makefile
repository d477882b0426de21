.PHONY: run test setup

# Set up and run the service with a seeded demo on embedded defaults (SQLite, file broker).
run:
	scripts/run.sh

# Set up and run the whole test suite against PostgreSQL, Redis and real Celery workers.
test:
	scripts/test.sh

setup:
	scripts/setup.sh
