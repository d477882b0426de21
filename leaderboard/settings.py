"""Holdout settings, read from the environment.

With no environment at all Holdout runs on embedded defaults (SQLite and a broker kept in files
under var/), so one command brings up a demo. Production sets DATABASE_URL, CELERY_BROKER_URL,
SECRET_KEY, ALLOWED_HOSTS and friends.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


VAR_DIR = Path(env_str("HOLDOUT_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "holdout-insecure-development-key-change-me-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "leaderboard",
    "api",
    "workers",
]

MIDDLEWARE = [
    # First: a body too large for its address is refused from its Content-Length before anything reads it.
    "api.limits.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "leaderboard.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "leaderboard.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'holdout.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to the same file: wait for locks instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Serves app static files without collectstatic too, so a fresh checkout and the tests look right.
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Where artifacts and data sets are kept: the local disk (one machine), or an S3-compatible object
# store that workers on other machines read too ("s3", or a storage class's dotted path).
FILE_STORAGE = env_str("HOLDOUT_FILE_STORAGE", "django.core.files.storage.FileSystemStorage")
if FILE_STORAGE == "s3":
    FILE_STORAGE = "storages.backends.s3.S3Storage"
# Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, an
# instance role), never from here.
S3_OPTIONS = {
    "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME", "holdout"),
    "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,  # MinIO, SeaweedFS, ...; unset: AWS
    "region_name": env_str("AWS_S3_REGION_NAME", "") or None,
    "file_overwrite": False,  # two uploads of one name never replace each other
    "querystring_auth": True,
}
STORAGES = {
    "default": {"BACKEND": FILE_STORAGE, **({"OPTIONS": S3_OPTIONS} if FILE_STORAGE.endswith("S3Storage") else {})},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Charts of a finished submission never change: drawn once, kept on disk for every web process.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(VAR_DIR / "cache"),
        "TIMEOUT": 7 * 24 * 3600,
        "OPTIONS": {"MAX_ENTRIES": 5000},
    }
}
# Uploads above this size go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Web-made tokens (hashed), and DRF's own tokens from `manage.py drf_create_token`.
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Holdout API",
    "DESCRIPTION": "Submit models, follow their evaluation, read multi-objective leaderboards.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -------------------------------------------------------------------------------------
# The embedded default keeps the queue in files, so a worker in another process needs no server.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # A message waits up to this long for a worker to notice it (kombu's default is 1 s, paid
        # twice per submission: the evaluation and the latency handoff); listing the folder five
        # times a second costs nothing measurable.
        "polling_interval": 0.2,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    # A message a killed worker held comes back after this long; the sweep usually acts first.
    else {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "evaluate"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
HOLDOUT_SWEEP_INTERVAL_SECONDS = env_int("HOLDOUT_SWEEP_INTERVAL_SECONDS", 15)
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-submissions": {
        "task": "holdout.sweep_stuck_submissions",
        "schedule": float(HOLDOUT_SWEEP_INTERVAL_SECONDS),
    },
}

# --- Holdout ------------------------------------------------------------------------------------
HOLDOUT_MAX_ARTIFACT_BYTES = env_int("HOLDOUT_MAX_ARTIFACT_BYTES", 100 * 1024 * 1024)
HOLDOUT_MAX_DATASET_BYTES = env_int("HOLDOUT_MAX_DATASET_BYTES", 500 * 1024 * 1024)
# Types skops may construct beyond its own safe set. Exact strings; nothing else is loaded.
# Tree and TreePredictor hold unchecked node arrays, which is why models run in a limited child.
HOLDOUT_SKOPS_TRUSTED_TYPES = env_list(
    "HOLDOUT_SKOPS_TRUSTED_TYPES",
    "numpy.dtype,sklearn.tree._tree.Tree,sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
HOLDOUT_MODEL_MEMORY_BYTES = env_int("HOLDOUT_MODEL_MEMORY_MB", 4096) * 1024 * 1024
HOLDOUT_MODEL_CPU_SECONDS = env_int("HOLDOUT_MODEL_CPU_SECONDS", 300)
HOLDOUT_BOOTSTRAP_RESAMPLES = env_int("HOLDOUT_BOOTSTRAP_RESAMPLES", 200)
# How many times a submission is started before the sweep gives up on it.
HOLDOUT_MAX_ATTEMPTS = env_int("HOLDOUT_MAX_ATTEMPTS", 3)
# A queued submission nobody picks up within this long is failed: no worker is serving the queue.
HOLDOUT_QUEUE_TIMEOUT_SECONDS = env_int("HOLDOUT_QUEUE_TIMEOUT_SECONDS", 24 * 3600)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
