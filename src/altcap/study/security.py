"""Form nonces, CSRF tokens, the signing key file and the admin session cookie.

A form's nonce is `<form id>.<issued ms>.<random>` and its CSRF token an HMAC of the participant and
the nonce under the study's secret key. Signing (instead of storing every rendered form) keeps page
views write-free, and the signed issue time gives the server-side response time of a task trial.

The signing key lives in `run_dir/secret_key` (mode 0600), never in the database: whoever can read a
copy of the database (a backup, a PostgreSQL dump) must not be able to forge an admin cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

ADMIN_COOKIE = "altcap_admin"
ADMIN_SESSION_SECONDS = 12 * 3600
KEY_FILE_NAME = "secret_key"
OWNER_ONLY_FILE = 0o600
OWNER_ONLY_DIR = 0o700


class KeyFileError(ValueError):
    """The signing key file is missing, unsafe or conflicting; the message says how to fix it."""


def sign(secret_key: str, message: str) -> str:
    """Hex HMAC-SHA256 of `message`."""
    return hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()


def parse_ascii_int(raw: str, max_digits: int = 15) -> int | None:
    """`raw` as a non-negative int if it is 1..max_digits ASCII digits, else None.

    `str.isdigit` accepts '²' and other Unicode digits that `int()` then rejects (a 500 before).
    """
    if not raw or len(raw) > max_digits or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


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
    if len(parts) != 3 or parse_ascii_int(parts[0]) != form_id or parse_ascii_int(parts[1]) is None:
        return None
    if not hmac.compare_digest(sign(secret_key, f"{owner}|{nonce}"), csrf or ""):
        return None
    return int(parts[1])


def new_admin_session_id() -> str:
    """A random admin session id (stored server-side only as its sha256)."""
    return secrets.token_urlsafe(24)


def make_admin_cookie(secret_key: str, session_id: str) -> str:
    """A signed, timestamped cookie value carrying the admin session id."""
    return URLSafeTimedSerializer(secret_key, salt="admin").dumps({"session": session_id})


def read_admin_cookie(secret_key: str, value: str | None) -> str | None:
    """The admin session id if the cookie is genuine and fresh, else None."""
    if not value:
        return None
    try:
        data = URLSafeTimedSerializer(secret_key, salt="admin").loads(value, max_age=ADMIN_SESSION_SECONDS)
    except BadSignature:
        return None
    session = data.get("session") if isinstance(data, dict) else None
    return session if isinstance(session, str) else None


def check_admin_secret(expected_sha256: str, given: str) -> bool:
    """Constant-time check of an admin secret against its stored sha256."""
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).hexdigest(), expected_sha256)


def write_owner_only(path: Path, text: str) -> None:
    """Create `path` with mode 0600 whatever the umask; refuses to overwrite an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY_FILE)
    try:
        os.fchmod(fd, OWNER_ONLY_FILE)  # O_CREAT's mode is masked by the umask; fchmod is not
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def make_private_dir(path: Path) -> None:
    """Create (if needed) a folder only its owner can enter (0700, umask-independent)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, OWNER_ONLY_DIR)


def store_signing_key(key_file: Path, key: str) -> None:
    """Write the signing key to `key_file` (0600), or accept an existing file holding the same key.

    Args:
        key_file: run_dir/secret_key.
        key: the key (a new one at `study init`, or one moved out of an older database).
    """
    if key_file.exists():
        if key_file.read_text(encoding="utf-8").strip() != key:
            raise KeyFileError(
                f"{key_file}: holds a different signing key than this study's database; use the run "
                "folder this study was created in (--run-dir), or move the other file away"
            )
        return
    key_file.parent.mkdir(parents=True, exist_ok=True)
    write_owner_only(key_file, key + "\n")


def read_signing_key(key_file: Path) -> str:
    """The study's signing key; refuses a key file that other users could read.

    Args:
        key_file: run_dir/secret_key, written by `altcap study init`.

    Returns:
        The key.
    """
    if not key_file.is_file():
        raise KeyFileError(
            f"{key_file}: signing key file not found; serve from the run folder `altcap study init` "
            "created (--run-dir), or copy its secret_key file here and `chmod 600` it"
        )
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{key_file}: mode {mode:o} lets other users read the signing key (anyone holding it can "
            f"sign in as the researcher); run `chmod 600 {key_file}`, then start again"
        )
    key = key_file.read_text(encoding="utf-8").strip()
    if len(key) < 32:
        raise KeyFileError(f"{key_file}: too short to be a signing key ({len(key)} characters)")
    return key


def hash_prefix(token: str) -> str:
    """A short sha256 prefix of a token, for logs (enough to tell links apart, useless to replay)."""
    return hashlib.sha256(token.encode()).hexdigest()[:10]
