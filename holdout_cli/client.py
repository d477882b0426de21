"""HTTP for the client: the base address, the token, retries with backoff, and readable errors."""

import os
import random
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import requests

from holdout_cli import __version__

# Statuses a proxy or a restarting server answers while the request may simply be retried.
RETRYABLE_STATUSES = frozenset({502, 503, 504})
CONNECT_TIMEOUT_SECONDS = 10


class ClientError(Exception):
    """Something the user fixes (configuration, token, network, a refused request): exit code 3."""


class ApiError(ClientError):
    """The server answered with an error status; the message is the server's own words."""

    def __init__(self, status: int, message: str, retry_after: str | None = None):
        self.status = status
        self.retry_after = retry_after
        text = f"the server answered {status}: {message}"
        if retry_after:
            text += f" (retry after {retry_after} s)"
        super().__init__(text)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 30.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "RetryPolicy":
        retries = env_number(environ, "HOLDOUT_RETRIES", int, default=cls.attempts - 1, minimum=0)
        backoff = env_number(environ, "HOLDOUT_BACKOFF", float, default=cls.backoff_seconds, minimum=0)
        return cls(attempts=retries + 1, backoff_seconds=backoff)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (attempt - 1))
        # Jitter spreads out the CI jobs that lost the same server at the same moment.
        return ceiling * random.uniform(0.5, 1.0)


def env_number(environ: Mapping[str, str], name: str, kind: type, *, default, minimum):
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ClientError(f"{name} must be a number, not {text!r}") from None
    if value < minimum:
        raise ClientError(f"{name} must be at least {minimum}, not {text!r}")
    return value


def base_url_from(text: str) -> str:
    """The server's root, whether HOLDOUT_URL names it or its /api/v1 prefix."""
    url = text.strip().rstrip("/")
    for suffix in ("/api/v1", "/api"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.startswith(("http://", "https://")):
        raise ClientError(f"HOLDOUT_URL must start with http:// or https://, not {text!r}")
    return url


class Client:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        retry: RetryPolicy = RetryPolicy(),
        read_timeout: float = 120.0,
        log: Callable[[str], None] = lambda text: print(f"holdout: {text}", file=sys.stderr),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url
        self.retry = retry
        self.read_timeout = read_timeout
        self.log = log
        self.sleep = sleep
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"holdout-cli/{__version__}"
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, *, token_required: bool) -> "Client":
        url = environ.get("HOLDOUT_URL", "").strip()
        if not url:
            raise ClientError(
                "HOLDOUT_URL is not set; set it to the server's address, e.g. https://holdout.example.com"
            )
        token = environ.get("HOLDOUT_TOKEN", "").strip()
        if token_required and not token:
            raise ClientError("HOLDOUT_TOKEN is not set; create a token on the web or with manage.py drf_create_token")
        read_timeout = env_number(environ, "HOLDOUT_REQUEST_TIMEOUT", float, default=120.0, minimum=1)
        return cls(base_url_from(url), token or None, retry=RetryPolicy.from_env(environ), read_timeout=read_timeout)

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict | list:
        return self._request("GET", path, params=params, honour_throttle=True).json()

    def submit(
        self, slug: str, *, filename: str, artifact: bytes, fields: dict[str, str], idempotency_key: str
    ) -> tuple[dict, bool]:
        """Upload a model; returns (submission, replayed). Every attempt carries the same key, so a
        retry after a lost response gets the first submission back instead of creating a second."""
        response = self._request(
            "POST",
            f"/api/v1/benchmarks/{slug}/submissions/",
            headers={"Idempotency-Key": idempotency_key},
            data=fields,
            files={"artifact": (filename, artifact)},
            # A throttled upload is a quota: waiting inside a CI job would only hide it.
            honour_throttle=False,
        )
        return response.json(), response.headers.get("Idempotent-Replayed", "").lower() == "true"

    def _request(self, method: str, path: str, *, honour_throttle: bool, **kwargs) -> requests.Response:
        url = self.base_url + path
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = self.session.request(
                    method, url, timeout=(CONNECT_TIMEOUT_SECONDS, self.read_timeout), **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as error:
                if last:
                    raise ClientError(
                        f"could not reach {self.base_url} ({_reason(error)}) after {attempt} attempt(s)"
                    ) from None
                self._wait(self.retry.delay(attempt), f"{method} {path} failed ({_reason(error)})", attempt)
                continue
            retryable = response.status_code in RETRYABLE_STATUSES or (honour_throttle and response.status_code == 429)
            if retryable and not last:
                delay = _retry_after(response) if response.status_code == 429 else None
                self._wait(
                    delay or self.retry.delay(attempt), f"{method} {path} answered {response.status_code}", attempt
                )
                continue
            if response.status_code >= 400:
                raise ApiError(response.status_code, error_message(response), response.headers.get("Retry-After"))
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self, seconds: float, what: str, attempt: int) -> None:
        self.log(f"{what}; retrying in {seconds:.1f} s (attempt {attempt + 1} of {self.retry.attempts})")
        self.sleep(seconds)


def _reason(error: Exception) -> str:
    # requests wraps urllib3's MaxRetryError, which keeps the cause a person can act on in .reason.
    cause = error.args[0] if error.args else error
    cause = getattr(cause, "reason", None) or cause
    text = str(cause)
    text = re.sub(r"^HTTPS?Connection\([^)]*\): ", "", text)
    return text if len(text) <= 200 else text[:200] + "..."


def _retry_after(response: requests.Response) -> float | None:
    try:
        return min(float(response.headers.get("Retry-After", "")), RetryPolicy.max_backoff_seconds)
    except ValueError:
        return None


def error_message(response: requests.Response) -> str:
    """The server's error as one line: DRF's {"detail": ...} or {field: [messages]}."""
    try:
        body = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return (text[:200] + "...") if len(text) > 200 else (text or response.reason or "no message")
    if isinstance(body, dict):
        if set(body) == {"detail"}:
            return str(body["detail"])
        return "; ".join(f"{field}: {_messages(value)}" for field, value in body.items())
    return _messages(body)


def _messages(value) -> str:
    if isinstance(value, list):
        return " ".join(_messages(item) for item in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_messages(item)}" for key, item in value.items())
    return str(value)
