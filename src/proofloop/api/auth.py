"""Bearer-token auth: a FastAPI dependency. The presented token is hashed and compared with
every configured digest in constant time (hmac.compare_digest, all of them, always), so
neither a token nor how much of one matched leaks through timing; no token is ever logged.

Routers mounted with `auth=True` in create_app get this dependency; so do /v1 and /metrics.
A browser cannot put a header on a link or an EventSource, so the viewer's login page
(/ui/login) sets the token as a cookie (HttpOnly, SameSite=Strict: never sent by another
site's page). The API accepts that cookie for reading only (GET, HEAD: the viewer's live
progress); the viewer's pages accept it for their form too, which checks its origin itself.

    >>> from proofloop.api.settings import token_digest
    >>> token_matches("s3cret", frozenset({token_digest("s3cret")})), token_matches("s3cre", frozenset({token_digest("s3cret")}))
    (True, False)
"""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

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


COOKIE = "proofloop_token"
READ_METHODS = ("GET", "HEAD")
PUBLIC_VIEWER_ROUTES = {"viewer_static", "viewer_login", "viewer_login_form"}  # what the login page itself needs


def presented_token(request: Request, credentials: HTTPAuthorizationCredentials | None, *,
                    cookie_for_any_method: bool = False) -> str | None:
    if credentials is not None and credentials.scheme.lower() == "bearer" and credentials.credentials:
        return credentials.credentials
    if cookie_for_any_method or request.method in READ_METHODS:
        return request.cookies.get(COOKIE) or None
    return None


def require_token(request: Request,
                  credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    """401 unless auth is off or the request carries `Authorization: Bearer <a known token>`
    (or, to read, the viewer's login cookie)."""
    settings = request.app.state.services.settings
    if not settings.auth_required:
        return
    token = presented_token(request, credentials)
    if token is None:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not token_matches(token, settings.tokens):
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def require_viewer(request: Request,
                   credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    """The viewer's pages: a known token (header or login cookie), else off to the login page."""
    settings = request.app.state.services.settings
    if not settings.auth_required or getattr(request.scope.get("route"), "name", None) in PUBLIC_VIEWER_ROUTES:
        return
    token = presented_token(request, credentials, cookie_for_any_method=True)
    if token is None or not token_matches(token, settings.tokens):
        login = request.url_for("viewer_login_form").path
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, "log in first", headers={"Location": f"{login}?{urlencode({'next': back})}"})
