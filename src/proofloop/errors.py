"""The typed error hierarchy shared by every layer.

Model errors carry the HTTP status and the server's Retry-After so that the retry policy in
models/wrapper.py can honour it. `retryable` says whether trying again may help.

    >>> e = RateLimitError("slow down", status=429, retry_after=2.0)
    >>> e.retryable, e.retry_after
    (True, 2.0)
"""

from __future__ import annotations


class ProofloopError(Exception):
    """Base of every error proofloop raises on purpose."""


class UserInputError(ProofloopError):
    """Bad input from the user (missing file, empty problem, bad template): one clear line."""


class MissingExtra(UserInputError, ImportError):
    """An optional part of proofloop was used without its extra installed (see extras.py).
    Also an ImportError, so that code probing for an optional module (and pytest.importorskip)
    treats it as "not installed"."""


class ModelError(ProofloopError):
    """A model call failed. `kind` is a short stable name stored in the run store."""

    kind = "model_error"
    retryable = False
    fatal = False  # True: no call to this endpoint can succeed; Model.sample raises it

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:  # one line, with the status when there is one
        return f"{self.kind}: {self.message}" + (f" (HTTP {self.status})" if self.status else "")


class RateLimitError(ModelError):
    kind = "rate_limit"
    retryable = True


class ModelTimeoutError(ModelError):
    kind = "timeout"
    retryable = True


class ServerError(ModelError):
    kind = "server_error"
    retryable = True


class ModelConnectionError(ModelError):
    """The connection failed or dropped. Retryable; `refused` marks 'nobody is there': the
    connection was refused or the host name does not resolve."""

    kind = "connection"
    retryable = True

    def __init__(self, message: str, *, refused: bool = False, **kw):
        super().__init__(message, **kw)
        self.refused = refused


class AuthError(ModelError):
    kind = "auth"
    fatal = True


class BadRequestError(ModelError):
    kind = "bad_request"


class ContextWindowError(BadRequestError):
    kind = "context_window"


class ModelNotFoundError(BadRequestError):
    """The server does not serve the model name that was sent (404/400 naming the model)."""

    kind = "model_not_found"


class EmptyResponseError(ModelError):
    """A 200 whose JSON holds no choices (or a stream that ended without any): asking again
    the same way is unlikely to help, so it is not retried."""

    kind = "empty_response"


class EndpointUnreachable(ModelError):
    """Fatal: no server answers at the configured address, even after retries."""

    kind = "unreachable"
    fatal = True


class IncompatibleServer(EndpointUnreachable):
    """Fatal: something answers at the address, but not an OpenAI-compatible API (an HTML page,
    plain text, JSON without `choices`)."""

    kind = "incompatible_server"


class BudgetExceeded(ProofloopError):
    """A token, cost or wall-time budget ran out; outstanding work for its scope is cancelled."""
