"""compose.yaml and the Dockerfile against what the README documents (Docker is not on these
machines, so the file is read and checked rather than started; tests/test_object_store.py runs the
same object-store configuration against a real server)."""

import re
from urllib.parse import urlparse

import pytest
import yaml

from tests.environment import PROJECT_DIR

HOLDOUT_SERVICES = {"init", "web", "worker", "latency-worker", "sweep"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((PROJECT_DIR / "compose.yaml").read_text())


def documented_variables() -> set[str]:
    """Every `NAME` in the first column of the README's Production table."""
    readme = (PROJECT_DIR / "README.md").read_text()
    section = readme[readme.index("## Production") :]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    names = set()
    for line in table:
        names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
        # Credentials are named in the meaning column (boto3's chain).
        names |= set(re.findall(r"`(AWS_[A-Z_]+)`", line))
    return names


def test_the_services_are_the_documented_parts_and_holdouts_are_built_from_this_repository(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "objectstore", *HOLDOUT_SERVICES}
    for name in HOLDOUT_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == "holdout:latest", name
    dockerfile = (PROJECT_DIR / "Dockerfile").read_text()
    assert "COPY requirements.txt" in dockerfile and "pip install --no-cache-dir -r requirements.txt" in dockerfile


def test_every_worker_serves_the_queues_the_readme_runs(compose):
    commands = {name: " ".join(service.get("command", [])) for name, service in compose["services"].items()}
    assert "-Q evaluate" in commands["worker"]
    assert "-Q latency" in commands["latency-worker"] and "--concurrency 1" in commands["latency-worker"]
    assert "-Q sweep" in commands["sweep"] and " -B " in commands["sweep"] + " "
    assert sum(" -B " in command + " " or " beat" in command for command in commands.values()) == 1, "one beat"
    assert "migrate" in commands["init"] and "prepare_storage" in commands["init"]
    assert commands["web"].startswith("gunicorn leaderboard.wsgi")
    readme = (PROJECT_DIR / "README.md").read_text()
    for queue in ("evaluate", "latency", "sweep"):
        assert f"-Q {queue}" in readme


def test_the_environment_is_documented_and_points_at_the_other_services(compose):
    documented = documented_variables()
    services = compose["services"]
    for name in HOLDOUT_SERVICES:
        environment = services[name]["environment"]
        assert set(environment) <= documented, (name, set(environment) - documented)
        assert urlparse(environment["DATABASE_URL"]).hostname == "postgres"
        assert urlparse(environment["CELERY_BROKER_URL"]).hostname == "redis"
        assert urlparse(environment["AWS_S3_ENDPOINT_URL"]).hostname == "objectstore"
        assert environment["HOLDOUT_FILE_STORAGE"] == "s3"
    postgres = services["postgres"]["environment"]
    url = urlparse(services["web"]["environment"]["DATABASE_URL"])
    assert (url.username, url.password, url.path[1:]) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
    )
    identities = yaml.safe_load(compose["configs"]["s3-identities"]["content"])["identities"][0]["credentials"][0]
    web = services["web"]["environment"]
    assert (identities["accessKey"], identities["secretKey"]) == (web["AWS_ACCESS_KEY_ID"], web["AWS_SECRET_ACCESS_KEY"])


def test_prepare_storage_checks_the_local_disk(db):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("prepare_storage", stdout=out)
    assert out.getvalue().startswith("Storage ready: django.core.files.storage.FileSystemStorage")
