"""Submission metadata: what the CI run knows about itself, under what the user passes explicitly."""

import json
import subprocess
from typing import Mapping

MAX_KEY_CHARS = 100
MAX_VALUE_CHARS = 1000
# The server refuses more than 16 KB of metadata; stay under it with room for JSON escaping.
MAX_METADATA_BYTES = 15 * 1024


class MetadataError(ValueError):
    """Metadata the user passed that cannot be sent: a usage error."""


def ci_metadata(environ: Mapping[str, str], cwd: str | None = None) -> dict[str, str]:
    """The commit and the CI run from the usual variables of GitHub Actions, GitLab CI or Jenkins,
    or the commit of the git checkout the client runs in."""
    found = _github(environ) or _gitlab(environ) or _generic(environ)
    if "git_sha" not in found:
        sha = _git_head(cwd)
        if sha:
            found["git_sha"] = sha
    return {key: value[:MAX_VALUE_CHARS] for key, value in found.items() if value}


def _github(environ: Mapping[str, str]) -> dict[str, str]:
    if environ.get("GITHUB_ACTIONS") != "true" and not environ.get("GITHUB_RUN_ID"):
        return {}
    server, repository, run_id = (
        environ.get(name, "") for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    return {
        "ci": "github-actions",
        "git_sha": environ.get("GITHUB_SHA", ""),
        "git_ref": environ.get("GITHUB_REF", ""),
        "ci_repository": repository,
        "ci_workflow": environ.get("GITHUB_WORKFLOW", ""),
        # Not the run attempt: a re-run sends the same Idempotency-Key to be answered with the
        # first attempt's submission, and the server refuses a key reused with other metadata.
        "ci_run_id": run_id,
        "ci_run_url": f"{server}/{repository}/actions/runs/{run_id}" if server and repository and run_id else "",
    }


def _gitlab(environ: Mapping[str, str]) -> dict[str, str]:
    if environ.get("GITLAB_CI") != "true" and not environ.get("CI_PIPELINE_ID"):
        return {}
    return {
        "ci": "gitlab-ci",
        "git_sha": environ.get("CI_COMMIT_SHA", ""),
        "git_ref": environ.get("CI_COMMIT_REF_NAME", ""),
        "ci_repository": environ.get("CI_PROJECT_PATH", ""),
        "ci_run_id": environ.get("CI_PIPELINE_ID", ""),
        "ci_run_url": environ.get("CI_PIPELINE_URL", ""),
        "ci_job_url": environ.get("CI_JOB_URL", ""),
    }


def _generic(environ: Mapping[str, str]) -> dict[str, str]:
    # GIT_COMMIT and BUILD_URL are Jenkins's names, which other CI systems and scripts reuse.
    return {
        "git_sha": environ.get("GIT_COMMIT", ""),
        "git_ref": environ.get("GIT_BRANCH", ""),
        "ci_run_url": environ.get("BUILD_URL", ""),
    }


def _git_head(cwd: str | None) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and sha else None


def pairs_parse(pairs: list[str]) -> dict[str, str]:
    """--metadata KEY=VALUE options as a dict; a later KEY wins."""
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MetadataError(f"cannot read --metadata {pair!r}; write KEY=VALUE")
        if len(key) > MAX_KEY_CHARS or len(value) > MAX_VALUE_CHARS:
            raise MetadataError(
                f"--metadata {key[:40]!r}: keys are limited to {MAX_KEY_CHARS} characters, values to {MAX_VALUE_CHARS}"
            )
        parsed[key] = value
    return parsed


def metadata_build(ci: dict[str, str], explicit: dict[str, str]) -> dict[str, str]:
    merged = {**ci, **explicit}
    size = len(json.dumps(merged).encode())
    if size > MAX_METADATA_BYTES:
        raise MetadataError(f"the metadata is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}")
    return merged
