class Rejected(ValueError):
    """Input a person must fix. The message is shown to them as it is; `field` names the input."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class QuotaExceeded(Rejected):
    """A person has used their daily submissions to a benchmark; they may submit again in `retry_after` s."""

    def __init__(self, message: str, *, quota: int, used: int, resets_at, retry_after: int):
        super().__init__(message)
        self.quota = quota
        self.used = used
        self.resets_at = resets_at
        self.retry_after = retry_after


class IdempotencyKeyReused(Rejected):
    """An Idempotency-Key that already made a submission came with a different request."""

    def __init__(self, message: str, *, submission_id):
        super().__init__(message, field="Idempotency-Key")
        self.submission_id = submission_id


class Conflict(Rejected):
    """A request the benchmark's state does not allow now (it is closed, not yet closed, a limit is
    reached): the API answers 409, and the message says what would make it possible."""


class NotAllowed(Rejected):
    """A signed-in person asking for what is not theirs to do (another's submission): 403."""


class HoldoutBudgetSpent(Conflict):
    """A submitter has had every release of information a guarded benchmark allows them (409)."""
