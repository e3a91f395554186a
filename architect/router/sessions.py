"""Browser sessions: the cookie that binds an agent to the browser that registered it.

A worker's page URL (worker and assignment) is no secret: it is in the access log,
in Referer headers, in a shared screenshot. Whoever registers with it gets that
worker's agent back. So the registration answer also sets an HttpOnly cookie
with a random session id, and the router only lets the same session re-claim
the agent, speak for it on a socket or submit for it (hub.RouterHub.check_owner).
Browsers send the cookie with mephisto-task's same-origin requests and with its
WebSocket handshake, so existing pages need no change.

Over TLS the cookie is `SameSite=None; Secure; Partitioned`, so that a page in a
cross-site iframe (MTurk's) keeps it; over plain HTTP it is `SameSite=Lax`.
"""

from __future__ import annotations

import re
import secrets
from http.cookies import CookieError, SimpleCookie

COOKIE_NAME = "architect_session"
_SESSION = re.compile(r"[A-Za-z0-9_-]{32}")  # what new_session makes: nothing else is one


def new_session() -> str:
    return secrets.token_urlsafe(24)  # 32 characters, 192 random bits


def is_session(value: str | None) -> bool:
    return value is not None and _SESSION.fullmatch(value) is not None


def session_in(cookie_header: str | None) -> str | None:
    """The session a `Cookie:` header carries, or None (none, or not one of ours)."""
    if not cookie_header or COOKIE_NAME not in cookie_header:
        return None
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header[:8192])
    except CookieError:
        return None
    morsel = cookies.get(COOKIE_NAME)
    value = morsel.value if morsel is not None else None
    return value if is_session(value) else None


def set_cookie_value(session: str, secure: bool) -> str:
    """The `Set-Cookie` value that hands `session` to a browser."""
    if secure:
        return f"{COOKIE_NAME}={session}; Path=/; HttpOnly; SameSite=None; Secure; Partitioned"
    return f"{COOKIE_NAME}={session}; Path=/; HttpOnly; SameSite=Lax"
