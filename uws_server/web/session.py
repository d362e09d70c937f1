"""Browser sessions and CSRF protection for the web pages.

A session is a signed cookie, not a server-side record, so a restart or a second
process serving the same ``var_dir`` keeps everyone signed in. The cookie holds the user
name, an expiry, a random session id and a fingerprint of the user's token hash, all
signed with HMAC-SHA256 under a secret generated at first start (``var_dir/web_secret``,
mode 0600). Because of the fingerprint, issuing a new token to a user ends every session
opened with the old one; signing out adds the session id to a revocation list kept (in
memory) until the session would have expired anyway.

CSRF: every form carries a per-session token, ``HMAC(secret, "csrf" + session id)``,
checked on each POST authenticated by the cookie. Requests authenticated with an
``Authorization`` header are not exposed to CSRF in the usual way, but a browser that
once answered a Basic challenge of the REST API re-sends those credentials by itself, so
such POSTs are refused when the browser says they come from another site (``Origin`` or
``Sec-Fetch-Site``). The sign-in form, which has no session yet, uses a double-submit
nonce cookie instead.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from uws_server.cross_site import is_cross_site

log = logging.getLogger("uws_server.web")

SESSION_COOKIE = "uws_session"
LOGIN_COOKIE = "uws_login"
COOKIE_PATH = "/ui"
SESSION_SECONDS = 8 * 3600
LOGIN_NONCE_SECONDS = 3600
SECRET_FILE = "web_secret"
_SECRET_BYTES = 32


def load_secret(var_dir: Path) -> bytes:
    """The signing secret, created (0600) on first use and shared by later starts.

    Creation links a fully written temporary file into place, so two processes starting
    together agree on one secret and none ever reads a half-written file.
    """
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / SECRET_FILE
    if not path.exists():
        tmp = var_dir / f".{SECRET_FILE}.{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(_SECRET_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o): restricting it to 0600", path, mode)
        os.chmod(path, 0o600)
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise RuntimeError(f"{path}: not a hexadecimal secret; delete it to regenerate") from None
    if len(secret) < 16:
        raise RuntimeError(f"{path}: secret too short; delete it to regenerate")
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """What a valid session cookie says."""

    user: str
    sid: str
    expires: int  # Unix time
    fingerprint: str


class SessionManager:
    """Signs, checks and revokes session cookies; derives CSRF tokens."""

    def __init__(self, secret: bytes, lifetime: int = SESSION_SECONDS) -> None:
        self._secret = secret
        self.lifetime = lifetime
        self._revoked: dict[str, int] = {}  # sid -> expiry
        self._lock = threading.Lock()

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def fingerprint(self, token_hash: str) -> str:
        """Ties a session to the token it was opened with (a new token ends it)."""
        return _b64(self._mac("fp", token_hash.encode()))[:22]

    def issue(self, user: str, token_hash: str, now: float | None = None) -> tuple[str, Session]:
        """A new session for ``user``: (cookie value, session)."""
        now = time.time() if now is None else now
        session = Session(
            user=user,
            sid=secrets.token_urlsafe(16),
            expires=int(now) + self.lifetime,
            fingerprint=self.fingerprint(token_hash),
        )
        return self.encode(session), session

    def encode(self, session: Session) -> str:
        payload = json.dumps(
            {"u": session.user, "s": session.sid, "e": session.expires, "f": session.fingerprint},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac('session', payload))}"

    def decode(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None if it is absent, forged, expired or revoked."""
        if not cookie or len(cookie) > 4096 or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(given, self._mac("session", payload)):
            return None
        try:
            data = json.loads(payload)
            session = Session(str(data["u"]), str(data["s"]), int(data["e"]), str(data["f"]))
        except (ValueError, KeyError, TypeError):
            return None
        now = time.time() if now is None else now
        if session.expires <= now:
            return None
        with self._lock:
            if session.sid in self._revoked:
                return None
        return session

    def revoke(self, session: Session) -> None:
        """Sign-out: the cookie stops working even if a copy of it survives."""
        now = time.time()
        with self._lock:
            self._revoked = {s: e for s, e in self._revoked.items() if e > now}
            self._revoked[session.sid] = session.expires

    def csrf_token(self, session: Session) -> str:
        return _b64(self._mac("csrf", session.sid.encode()))[:32]

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            str(presented).encode(), self.csrf_token(session).encode()
        )


def new_login_nonce() -> str:
    return secrets.token_urlsafe(18)


def nonce_ok(cookie: str | None, field: str | None) -> bool:
    """The sign-in form's double-submit check: the field must repeat the cookie."""
    return bool(cookie) and bool(field) and hmac.compare_digest(str(cookie), str(field))


def cross_site(origin: str | None, fetch_site: str | None, host: str) -> bool:
    """True when the browser says a request comes from another site than ``host``: the
    one rule of :mod:`uws_server.cross_site`, for these headers alone."""
    environ = {"HTTP_HOST": host}
    if origin is not None:
        environ["HTTP_ORIGIN"] = origin
    if fetch_site is not None:
        environ["HTTP_SEC_FETCH_SITE"] = fetch_site
    return is_cross_site(environ)
