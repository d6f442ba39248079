"""Form nonces, CSRF tokens and the admin session cookie.

A form's nonce is `<form id>.<issued ms>.<random>` and its CSRF token an HMAC of the participant and
the nonce under the study's secret key. Signing (instead of storing every rendered form) keeps page
views write-free, and the signed issue time gives the server-side response time of a task trial.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from itsdangerous import BadSignature, URLSafeTimedSerializer

ADMIN_COOKIE = "altcap_admin"
ADMIN_SESSION_SECONDS = 12 * 3600


def sign(secret_key: str, message: str) -> str:
    """Hex HMAC-SHA256 of `message`."""
    return hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()


def issue_form_token(secret_key: str, owner: str, form_id: int) -> tuple[str, str]:
    """A fresh (nonce, csrf) pair for one rendered form.

    Args:
        secret_key: the study's HMAC key.
        owner: who may post it (participant id, or the admin session).
        form_id: the trial id (0 for forms that are not trials).

    Returns:
        The nonce and its CSRF token.
    """
    nonce = f"{form_id}.{int(time.time() * 1000)}.{secrets.token_hex(8)}"
    return nonce, sign(secret_key, f"{owner}|{nonce}")


def verify_form_token(secret_key: str, owner: str, form_id: int, nonce: str, csrf: str) -> int | None:
    """The nonce's issue time in ms if the pair is genuine and for this form, else None."""
    parts = nonce.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or int(parts[0]) != form_id:
        return None
    if not hmac.compare_digest(sign(secret_key, f"{owner}|{nonce}"), csrf or ""):
        return None
    return int(parts[1])


def make_admin_cookie(secret_key: str) -> str:
    """A signed, timestamped admin session value."""
    return URLSafeTimedSerializer(secret_key, salt="admin").dumps({"session": secrets.token_hex(8)})


def read_admin_cookie(secret_key: str, value: str | None) -> str | None:
    """The admin session id if the cookie is genuine and fresh, else None."""
    if not value:
        return None
    try:
        data = URLSafeTimedSerializer(secret_key, salt="admin").loads(value, max_age=ADMIN_SESSION_SECONDS)
    except BadSignature:
        return None
    return data.get("session") if isinstance(data, dict) else None


def check_admin_secret(expected_sha256: str, given: str) -> bool:
    """Constant-time check of an admin secret against its stored sha256."""
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).hexdigest(), expected_sha256)
