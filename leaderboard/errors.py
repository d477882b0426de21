class Rejected(ValueError):
    """Input a person must fix. The message is shown to them as it is; `field` names the input."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
