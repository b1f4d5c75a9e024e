"""What `proofloop serve` is configured with: the run store, the model set-up runs start with,
the workers, the limits, and the bearer tokens.

Tokens come from PROOFLOOP_API_TOKENS (comma separated) and/or a token file (one per line,
`#` comments). They live in memory only, as SHA-256 digests: never stored, never logged.
A server bound to anything but a loopback address refuses to start without tokens unless
auth is turned off explicitly.

    >>> s = ServeSettings(db=":memory:", tokens=frozenset({"t0k"}), host="0.0.0.0")
    >>> s.check_bind()                      # tokens given: fine on any address
    >>> ServeSettings(db=":memory:", host="0.0.0.0").check_bind()
    Traceback (most recent call last):
    ...
    proofloop.errors.UserInputError: binding to 0.0.0.0 needs bearer tokens (PROOFLOOP_API_TOKENS or --token-file), or --no-auth to serve without them
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("10.0.0.2")
    (True, True, True, False)
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from proofloop.errors import UserInputError

if TYPE_CHECKING:
    from proofloop.runs import ModelSetup

TOKENS_ENV = "PROOFLOOP_API_TOKENS"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def load_tokens(token_file: Path | None = None, environ: dict[str, str] | None = None) -> frozenset[str]:
    """Tokens from the environment and the file (both when both are given)."""
    env = os.environ if environ is None else environ
    tokens = {t.strip() for t in env.get(TOKENS_ENV, "").split(",") if t.strip()}
    if token_file is not None:
        try:
            lines = Path(token_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UserInputError(f"cannot read the token file {token_file}: {e.__class__.__name__}") from None
        tokens |= {ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")}
        if not tokens:
            raise UserInputError(f"the token file {token_file} holds no token")
    return frozenset(tokens)


@dataclass
class Limits:
    max_body_bytes: int = 2_000_000  # a request body larger than this is refused with 413
    max_option: int = 1024  # most any number in a strategy's options may be (threads, rounds, ...)
    page_max: int = 200  # most runs one GET /v1/runs returns
    sync_max_pairs: int = 8  # verify/grade batches up to this size are answered in the call
    sync_wait_s: float = 300.0  # a synchronous batch not done by then is answered 202 with its run


@dataclass
class ServeSettings:
    """Everything `create_app` needs. `setup` None: the simulator (tests, demos)."""

    db: str | Path
    setup: "ModelSetup | None" = None
    api_key: str | None = None  # the model server's key: used, never stored
    workers: int = 2  # runs executed at the same time
    tokens: frozenset[str] = field(default_factory=frozenset)
    no_auth: bool = False
    host: str = "127.0.0.1"
    limits: Limits = field(default_factory=Limits)
    resume_unfinished: bool = True  # at start-up, pick up the runs a killed server left
    viewer: bool = True  # the web pages under /ui
    rewards: bool = True  # POST /v1/rewards: the paper's rewards, judged by the served model

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise UserInputError(f"--workers must be at least 1, got {self.workers}")
        # Keep digests only, so a token never sits in a settings dump or a traceback.
        self.tokens = frozenset(t if t.startswith("sha256:") else token_digest(t) for t in self.tokens)

    @property
    def auth_required(self) -> bool:
        return bool(self.tokens) and not self.no_auth

    def check_bind(self) -> None:
        """Refuse a non-loopback bind without tokens, unless auth was turned off on purpose."""
        if not self.tokens and not self.no_auth and not is_loopback(self.host):
            raise UserInputError(f"binding to {self.host} needs bearer tokens ({TOKENS_ENV} or --token-file), "
                                 f"or --no-auth to serve without them")

    def model_setup(self) -> "ModelSetup":
        from proofloop.models.factory import ModelSettings
        from proofloop.runs import ModelSetup

        return self.setup or ModelSetup(ModelSettings(provider="sim"))


def token_digest(token: str) -> str:
    """How a token is held and compared: its SHA-256, never the token itself."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()
