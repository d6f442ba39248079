"""Checks that run before a request's body is read: path sanity, body size, participant link, admin
session, and the per-client limits on failed sign-ins and unknown links (issue #28).

FastAPI parses a form before any dependency runs, so a token check in a dependency came after a
multipart upload had been spooled; this ASGI middleware answers from the path and cookie alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from altcap.study.deps import UNKNOWN_LINK, error_response, get_state
from altcap.study.security import ADMIN_COOKIE, hash_prefix

logger = logging.getLogger("altcap.study")
TOKEN_IN_PATH = re.compile(r"/p/([^/?#\s\"]+)")
PARTICIPANT_PATH = re.compile(r"^/p/([^/]+)(/.*)?$")
Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def redact_tokens(text: str) -> str:
    """`text` with every `/p/<token>` replaced by `/p/#<sha256 prefix>` (for logs)."""
    return TOKEN_IN_PATH.sub(lambda m: f"/p/#{hash_prefix(m.group(1))}", text)


class RedactTokensFilter(logging.Filter):
    """Rewrites log records (uvicorn's access and error logs included) so no invitation token shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the message and its arguments; never drops a record."""
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_log_redaction() -> None:
    """Attach the token filter to the study's and uvicorn's loggers (once)."""
    for name in ("altcap.study", "uvicorn.access", "uvicorn.error"):
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactTokensFilter) for f in target.filters):
            target.addFilter(RedactTokensFilter())


def client_of(request: Request) -> str:
    """The client address (the real one when uvicorn trusts the proxy's X-Forwarded-For)."""
    return request.client.host if request.client else "unknown"


def too_many_attempts(request: Request) -> Response:
    """The 429 page (retry hint, no detail an attacker could use)."""
    response = error_response(
        request,
        429,
        "Too many attempts",
        "There were too many unsuccessful attempts from your connection. Wait a few minutes, then "
        "open your study link or sign in again.",
    )
    response.headers["Retry-After"] = "60"
    return response


def _bad_length(length: str | None, cap: int) -> bool:
    return length is not None and (not length.isascii() or not length.isdigit() or int(length) > cap)


class RequestGuard:
    """ASGI middleware: refuses bad paths, oversize bodies, unknown links and signed-out admin posts
    before the app reads a byte of the body."""

    def __init__(self, app, max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the checks, then the app with a size-capped `receive`."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = await self._refusal(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self._capped(receive), send)

    async def _refusal(self, request: Request) -> Response | None:
        path = request.scope["path"]
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
            return error_response(request, 400, "Something was not right", "This address is not valid.")
        if _bad_length(request.headers.get("content-length"), self.max_body_bytes):
            return error_response(
                request, 413, "This form is too large", "Shorten your answer, then send it again."
            )
        match = PARTICIPANT_PATH.match(path)
        if match:
            return await self._check_token(request, match.group(1))
        if request.method == "POST" and path.startswith("/admin/") and path != "/admin/login":
            state = get_state(request)
            cookie = request.cookies.get(ADMIN_COOKIE)
            if not await run_in_threadpool(state.admin_session_valid, cookie):
                return RedirectResponse("/admin/login", status_code=303)
        return None

    async def _check_token(self, request: Request, token: str) -> Response | None:
        state, client = get_state(request), client_of(request)
        if not state.limits.token_allowed(client):
            logger.warning(
                "rate limit: too many unknown participant links from %s; refused /p/#%s",
                client,
                hash_prefix(token),
            )
            return too_many_attempts(request)
        if await run_in_threadpool(state.token_known, token):
            return None
        state.limits.record_token_failure(client)
        logger.warning("unknown participant link /p/#%s from %s", hash_prefix(token), client)
        return error_response(request, UNKNOWN_LINK.status_code, UNKNOWN_LINK.title, UNKNOWN_LINK.message)

    def _capped(self, receive: Receive) -> Receive:
        received = 0
        cap = self.max_body_bytes

        async def capped_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # An HTTPException passes through FastAPI's form parsing untouched: a 413 page.
                    raise StarletteHTTPException(413)
            return message

        return capped_receive
