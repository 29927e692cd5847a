"""Bearer-token authorisation of the endpoints that change banks.

The token comes from a file (``--token-file``, surrounding whitespace stripped) or the
environment variable ``HASHLIB_EXT_TOKEN``. It is held in a :class:`Token`, whose ``repr``
hides it, compared in constant time (:func:`hmac.compare_digest`) and never logged. A
server started without a token refuses every write (403): it can still match.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat

from ..errors import ServiceError
from .errors import forbidden, unauthorized

ENV_VAR = "HASHLIB_EXT_TOKEN"
MIN_LENGTH = 16
"""Shortest token accepted (a guessable token is no protection)."""
MAX_LENGTH = 4096


def token_error(message: str) -> ServiceError:
    """The token file cannot be read, or the token is too short or too long (the server
    does not start)."""
    return ServiceError(message, 500, "TokenError")


class Token:
    """A secret bearer token; ``str`` and ``repr`` never show it."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str):
        secret = secret.strip()
        if not MIN_LENGTH <= len(secret) <= MAX_LENGTH:
            raise token_error(f"the token must be {MIN_LENGTH} to {MAX_LENGTH} characters "
                             f"(got {len(secret)})")
        if any(c.isspace() or not c.isprintable() for c in secret):
            raise token_error("the token must be printable characters without spaces")
        self._secret = secret.encode("utf-8")

    def matches(self, given: bytes) -> bool:
        return hmac.compare_digest(self._secret, given)

    def __repr__(self) -> str:
        return "Token(<hidden>)"

    __str__ = __repr__


def load_token(token_file: str | None) -> tuple[Token | None, str | None]:
    """The token from ``token_file``, else from :data:`ENV_VAR`, else None; and a warning
    (or None) when the token file can be read by other users."""
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise token_error(f"{token_file}: not a regular file")
                text = f.read(MAX_LENGTH + 2)
        except (OSError, UnicodeDecodeError) as e:
            raise token_error(f"{token_file}: cannot read the token file: "
                             f"{getattr(e, 'strerror', None) or e}") from None
        warning = None
        if st.st_mode & 0o077:
            warning = f"{token_file} can be read by other users (chmod 600 it)"
        return Token(text), warning
    env = os.environ.get(ENV_VAR)
    if env:
        return Token(env), None
    return None, None


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_write(token: Token | None, authorization: str | None) -> None:
    """Raise unless ``authorization`` (the header) carries the server's token."""
    if token is None:
        raise forbidden("this server was started without a token: banks are read-only "
                        f"(set {ENV_VAR} or --token-file to allow changes)")
    if not authorization:
        raise unauthorized("this endpoint needs 'Authorization: Bearer <token>'")
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.matches(given.strip().encode("utf-8")):
        raise unauthorized("invalid bearer token")
