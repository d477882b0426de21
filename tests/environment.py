"""Loaded as a pytest plugin (`-p tests.environment`), before pytest-django reads the settings.

The environment is fixed here so the test process and the Celery worker processes it starts agree
on the database, the broker and where files live, and nothing is written into the checkout's var/.
"""

import os
import tempfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(tempfile.mkdtemp(prefix="holdout-tests-"))
# Two test runs on one machine (a developer's and a helper's, say) must not drop each other's
# database or take each other's tasks: each run gets its own database (pytest-django adds the
# test_ prefix) and one of Redis's databases 1-15, unless the environment names them.
RUN = os.getpid()
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/holdout_{RUN}")
os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{1 + RUN % 15}")
os.environ["HOLDOUT_VAR_DIR"] = str(VAR_DIR)
os.environ["MEDIA_ROOT"] = str(VAR_DIR / "media")
(VAR_DIR / "static").mkdir()
os.environ.setdefault("HOLDOUT_BOOTSTRAP_RESAMPLES", "100")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
