"""The documented error types of the bundle.

Every error names the field it is about (``error.field``), so a failed event says
what was wrong without echoing the input, which may be huge or personal.
"""


class EventError(ValueError):
    """An event, or one of its fields, is not usable. ``str(e)`` is "<field>: <problem>"."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self):  # keep pickling (multiprocessing, Windmill) working
        return (type(self), (self.field, self.problem))


class MissingField(EventError):
    """A required field is absent or null."""

    def __init__(self, field: str, problem: str = "missing"):
        super().__init__(field, problem)


class MalformedField(EventError):
    """A field is present but has the wrong type or format."""


class SignatureError(EventError):
    """A delivery failed verification; ``field`` names the header or "body" at fault."""


class EventRejected(EventError):
    """The store recorded the event in the inbox as failed: its payload is unusable (e.g.
    a missing required id). Retrying cannot change that, so the record step's `retry_if`
    does not retry it (Windmill names the error after the class: ``error.name``)."""

    def __init__(self, webhook_id: str, error: str):
        self.webhook_id, self.error = webhook_id, error
        super().__init__(f"event {webhook_id}", f"rejected: {error}")

    def __reduce__(self):
        return (type(self), (self.webhook_id, self.error))


class OutcomeUnknown(RuntimeError):
    """A request that takes no idempotency key (Slack chat.postMessage, Twilio Messages)
    may have reached the provider, but no answer says whether it was delivered (a read
    timeout, a 5xx after sending). Resending could deliver twice, so the delivery ledger
    records it "unknown" and reports it; only an explicit resend sends it again."""


class ConfigError(RuntimeError):
    """A setting is missing or wrong: ``str(e)`` is one line, "<setting>: <problem>; <fix>",
    naming the Windmill variable/resource (or environment variable) and what to do. The
    local runner prints it without a traceback."""

    def __init__(self, setting: str, problem: str, fix: str):
        self.setting, self.problem, self.fix = setting, problem, fix
        super().__init__(f"{setting}: {problem}; {fix}")

    def __reduce__(self):
        return (type(self), (self.setting, self.problem, self.fix))
