"""`create_app`: the study web app (FastAPI + Jinja2, plain HTML forms, no JavaScript needed)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from altcap.study.config import StudySiteConfig
from altcap.study.db import Study, make_engine, make_session_factory, secure_sqlite_file, upgrade_database
from altcap.study.deps import TEMPLATES_DIR, AdminLoginRequired, AppState, PageError, render
from altcap.study.guard import RequestGuard, install_log_redaction, redact_tokens
from altcap.study.rate_limits import FailureLimits
from altcap.study.routes import admin, export, participant
from altcap.study.security import KEY_FILE_NAME, read_signing_key
from altcap.study.trials import load_study

STATIC_DIR = Path(__file__).parent / "static"
logger = logging.getLogger(__name__)
# Tokens travel in URLs, so no page may leak them through Referer; nothing here needs scripts or framing.
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
}
# Browsers that once reached the study over https refuse plain http to it for two years.
HSTS = "max-age=63072000"
STATUS_TITLES = {
    404: "Page not found",
    405: "This action is not allowed here",
    400: "Something was not right",
    413: "This form is too large",
}
STATUS_MESSAGES = {413: "Shorten your answer, then send it again."}


def _error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    return render(
        request, "error.html", {"title": title, "message": message, "code": status_code}, status_code
    )


def install_error_pages(app: FastAPI) -> None:
    """Every failure becomes a clear HTML page with a 4xx/5xx status, never a traceback."""

    @app.exception_handler(PageError)
    async def page_error(request: Request, err: PageError) -> Response:
        return _error_page(request, err.status_code, err.title, err.message)

    @app.exception_handler(AdminLoginRequired)
    async def admin_login(_request: Request, _err: AdminLoginRequired) -> Response:
        return RedirectResponse("/admin/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        title = STATUS_TITLES.get(err.status_code, "Something went wrong")
        message = STATUS_MESSAGES.get(err.status_code, "Check the address, or open your study link again.")
        return _error_page(request, err.status_code, title, message)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, _err: RequestValidationError) -> Response:
        return _error_page(
            request,
            400,
            "Something was not right",
            "The address or form was not in the expected shape. Open your study link again.",
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> Response:
        logger.exception("unhandled error on %s", redact_tokens(request.url.path), exc_info=err)
        return _error_page(
            request,
            500,
            "Sorry, something went wrong",
            "Your saved answers are safe. Please try again in a minute, or open your study link again.",
        )


def _load_state(site: StudySiteConfig) -> AppState:
    db_url = site.resolve_db_url()
    key_file = site.run_dir / KEY_FILE_NAME
    secure_sqlite_file(db_url)
    engine = make_engine(db_url)
    upgrade_database(engine, key_file)
    session_factory = make_session_factory(engine)
    with session_factory() as db:
        study = db.scalars(select(Study)).first()
    if study is None:
        raise ValueError(f"{db_url}: no study in this database; run `altcap study init study.yaml` first")
    loaded = load_study(study, read_signing_key(key_file))
    templates = Jinja2Templates(TEMPLATES_DIR)
    return AppState(engine, session_factory, loaded, templates, FailureLimits.from_site(site))


def create_app(site: StudySiteConfig) -> FastAPI:
    """Build the app on an initialised study database.

    Args:
        site: run folder (holds the signing key file) and database of a study made by `altcap study init`.

    Returns:
        The FastAPI app (serve it with uvicorn).
    """
    install_log_redaction()
    app = FastAPI(title="altcap study", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.study_app = _load_state(site)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in (participant.router, admin.router, export.router):
        app.include_router(router)

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        return render(request, "home.html", {})

    # Added first, so it runs inside the header middleware: its refusals get the headers too.
    app.add_middleware(RequestGuard, max_body_bytes=site.max_body_bytes)

    @app.middleware("http")
    async def add_security_headers(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        # Server-Timing lets load tests separate server time from client-side queueing.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        response.headers.update(SECURITY_HEADERS)
        if request.url.scheme == "https":
            response.headers["Strict-Transport-Security"] = HSTS
        if request.url.path.startswith(("/p/", "/admin")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    install_error_pages(app)
    return app
