"""Bearer-token auth: a FastAPI dependency. The presented token is hashed and compared with
every configured digest in constant time (hmac.compare_digest, all of them, always), so
neither a token nor how much of one matched leaks through timing; no token is ever logged.

Routers mounted with `auth=True` in create_app get this dependency; so do /v1 and /metrics.

    >>> from proofloop.api.settings import token_digest
    >>> token_matches("s3cret", frozenset({token_digest("s3cret")})), token_matches("s3cre", frozenset({token_digest("s3cret")}))
    (True, False)
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from proofloop.api.settings import token_digest

bearer = HTTPBearer(auto_error=False, description="a token from PROOFLOOP_API_TOKENS or the --token-file")


def token_matches(token: str, digests: frozenset[str]) -> bool:
    presented = token_digest(token)
    found = False
    for digest in digests:  # no early exit: the time does not depend on which one matched
        found |= hmac.compare_digest(presented, digest)
    return found


def require_token(request: Request,
                  credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    """401 unless auth is off or the request carries `Authorization: Bearer <a known token>`."""
    settings = request.app.state.services.settings
    if not settings.auth_required:
        return
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not token_matches(credentials.credentials, settings.tokens):
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
