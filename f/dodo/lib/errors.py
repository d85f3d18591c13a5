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
    """A delivery failed verification; ``field`` names the header or "body" at fault.

    ``rejected`` is an instance attribute, so Windmill's wrapper reports it in the job's
    ``error.extra``: the entry flow's failure module is skipped for it (its `skip_if`,
    f/dodo/webhook__flow/flow.yaml). Nothing of a rejected request may be recorded, and
    verifying it again there would only repeat the preprocessor's answer in a process
    of its own."""

    def __init__(self, field: str, problem: str):
        super().__init__(field, problem)
        self.rejected = True


class EventRejected(EventError):
    """The store recorded the event in the inbox as failed: its payload is unusable (e.g.
    a missing required id). Retrying cannot change that, so the record step's `retry_if`
    does not retry it (it is permanent: see RETRY_IF)."""

    def __init__(self, webhook_id: str, error: str):
        self.webhook_id, self.error = webhook_id, error
        super().__init__(f"event {webhook_id}", f"rejected: {error}")
        self.permanent = True  # RETRY_IF below

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
    local runner prints it without a traceback. Not permanent as such: a database that
    does not answer (db.DatabaseUnreachable) is one, and an outage passes."""

    def __init__(self, setting: str, problem: str, fix: str):
        self.setting, self.problem, self.fix = setting, problem, fix
        super().__init__(f"{setting}: {problem}; {fix}")

    def __reduce__(self):
        return (type(self), (self.setting, self.problem, self.fix))


# -- permanent errors: fail at once, never retried ----------------------------------------
# Windmill's Python wrapper reports a failed job as {name, message, stack, extra}, `extra`
# being the exception's instance attributes (windmill-labs/windmill
# backend/windmill-worker/src/python_executor.rs@94bbd518, the wrapper's `except` block).
# An error whose instance attribute `permanent` is True cannot be cured by retrying
# (a missing variable or resource, an invalid routing variable, HubSpot's 4xx other than
# 429, a rejected payload, a schema behind the code): every retried step's `retry_if` is
# RETRY_IF, so it fails at once and the flow's failure module records it, with the fix in
# the message. A `$var:`/`$res:` argument whose path does not exist fails the job in the
# worker before any code runs, with "Variable <path> not found for `<arg>`" (common.rs@005fbdf8
# transform_json_value): RETRY_IF stops on that message too. The SQL record step has no
# `extra` (the worker's PostgreSQL executor reports the server's message): it stops on
# "EventRejected: " (a value the database rejects, migration v050), "SchemaBehind: " and
# " does not exist" (a schema older than v050: its function missing; waiting cannot migrate).
RETRY_IF = "!(error.extra?.permanent === true || / not found for `|EventRejected: |SchemaBehind: | does not exist/.test(error.message))"


def mark_permanent(exc: BaseException) -> BaseException:
    """`exc`, marked as not worth retrying (see RETRY_IF)."""
    exc.permanent = True
    return exc


def is_permanent(exc: BaseException) -> bool:
    """True when `exc` carries the instance attribute Windmill passes on as `extra.permanent`."""
    return vars(exc).get("permanent") is True


class SchemaBehind(RuntimeError):
    """The database schema is older than the code (or was never migrated): permanent, the
    message names the fix (f/dodo/migrate with the owner role)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.permanent = True
