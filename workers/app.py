import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

app = Celery("holdout")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])

if app.conf.broker_url.startswith("filesystem"):
    # The embedded broker is a pair of folders that every process on this machine shares.
    for folder in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        Path(app.conf.broker_transport_options[folder]).mkdir(parents=True, exist_ok=True)
