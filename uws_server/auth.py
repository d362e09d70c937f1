"""Tokens and request authentication.

Tokens are 256-bit random strings shown once; only their SHA-256 is stored. A slow
password hash is unnecessary for tokens of that entropy, and a fast hash keeps
authentication off the hot path's profile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import time

from uws_server.errors import AuthenticationRequired, BadRequest, Forbidden
from uws_server.models import ANONYMOUS, User
from uws_server.storage import Store

# Seconds a looked-up user is trusted before the database is asked again; short, so
# that `uws-server user disable` (another process) takes effect quickly.
CACHE_SECONDS = 2.0


# THE rule for user names, wherever a user is made (the admin page, ``uws-server user
# add``): a name appears in Basic credentials (so no ':'), in job lists, provenance
# documents and web pages (so no markup), and in the jobs table (at most 64 characters).
USER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.@-]{0,63}")
USER_NAME_RULE = "a letter then up to 63 letters, digits, '_', '.', '@' or '-'"
RESERVED_USER_NAMES = frozenset({"anonymous"})  # the identity of unauthenticated callers
ROLE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def check_user_name(name: str) -> str:
    """The name if it may name a new user; BadRequest saying why not otherwise."""
    if not USER_NAME.fullmatch(name):
        shown = name[:64].encode("unicode_escape").decode("ascii")
        raise BadRequest(f"user name {shown!r}: {USER_NAME_RULE}")
    if name in RESERVED_USER_NAMES:
        raise BadRequest(f"user name {name!r} is reserved")
    return name


def parse_roles(text: str) -> tuple[str, ...]:
    """Comma- or space-separated role names, lower-cased, each checked, no repeats."""
    roles = [r.strip().lower() for r in re.split(r"[,\s]+", text) if r.strip()]
    bad = [r for r in roles if not ROLE.fullmatch(r)]
    if bad:
        raise BadRequest(f"roles: {bad[0][:32]!r} is not a role name (letters, digits, _ or -)")
    return tuple(dict.fromkeys(roles))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_match(token: str, token_hash: str | None) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    if not token_hash:
        return False
    return hmac.compare_digest(hash_token(token), token_hash)


def parse_authorization(header: str | None) -> tuple[str | None, str] | None:
    """Return (name or None, token) from a Basic or Bearer header, None if absent.

    Raises AuthenticationRequired for a header that is present but unreadable.
    """
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return None, value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationRequired("malformed Basic authorization header") from None
        name, sep, token = decoded.partition(":")
        if not sep or not token:
            raise AuthenticationRequired("Basic authorization must be name:token")
        return name, token
    raise AuthenticationRequired("unsupported authorization scheme (use Basic or Bearer)")


class Authenticator:
    """Turns an Authorization header into a User, with a short-lived cache."""

    def __init__(self, store: Store, allow_anonymous: bool) -> None:
        self.store = store
        self.allow_anonymous = allow_anonymous
        self._cache: dict[str, tuple[float, User | None]] = {}
        self._lock = threading.Lock()

    def _lookup(self, token_hash: str) -> User | None:
        now = time.monotonic()
        hit = self._cache.get(token_hash)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        user = self.store.user_by_token_hash(token_hash)
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[token_hash] = (now, user)
        return user

    def user_for_token(self, token: str) -> User | None:
        """The account a token belongs to (None: no such token), disabled or not: the
        web sign-in form asks here, as every API request does."""
        return self._lookup(hash_token(token))

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def authenticate(self, header: str | None, required: bool = True) -> User:
        """The user behind the header; anonymous when allowed or not required."""
        creds = parse_authorization(header)
        if creds is None:
            if self.allow_anonymous or not required:
                return ANONYMOUS
            raise AuthenticationRequired(
                "authentication required (HTTP Basic name:token or Bearer)"
            )
        name, token = creds
        user = self._lookup(hash_token(token))
        if user is None or (name is not None and name != user.name):
            raise AuthenticationRequired("invalid credentials")
        if user.disabled:
            raise Forbidden(f"user {user.name} is disabled")
        return user
