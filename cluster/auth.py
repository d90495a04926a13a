"""Ray token authentication, the way Ray 2.60 looks the token up (never printed, never stored).

Ray's own lookup order (C++ ``AuthenticationTokenLoader``): the ``RAY_AUTH_TOKEN`` environment
variable, then the file named by ``RAY_AUTH_TOKEN_PATH``, then ``~/.ray/auth_token``. The HTTP
side (dashboard, job API) accepts ``Authorization: Bearer <token>`` (or ``X-Ray-Authorization``,
or the ``ray-authentication-token`` cookie the dashboard sets) and answers 401 "Missing
authentication token" / 403 "Invalid authentication token" otherwise.

Our commands pass the token as an explicit ``Authorization`` header, so they work whatever
``RAY_AUTH_MODE`` the submitting shell has. Only the *source* of the token is ever shown.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
AUTH_MODE_ENV = "RAY_AUTH_MODE"


def default_token_path() -> Path:
    return Path.home() / ".ray" / "auth_token"


@dataclass(frozen=True)
class Token:
    value: str
    source: str  # where it came from, safe to print

    def __repr__(self) -> str:  # keeps the secret out of tracebacks and logs
        return f"Token(source={self.source!r})"

    __str__ = __repr__

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


def find_token(environ: os._Environ | dict | None = None) -> Token | None:
    """The token Ray would use, or None when there is none."""
    env = os.environ if environ is None else environ
    value = (env.get(TOKEN_ENV) or "").strip()
    if value:
        return Token(value=value, source=f"${TOKEN_ENV}")
    path_value = (env.get(TOKEN_PATH_ENV) or "").strip()
    path = Path(path_value).expanduser() if path_value else default_token_path()
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return Token(value=value, source=str(path))
    return None


def ensure_token(environ: os._Environ | dict | None = None) -> tuple[Token, bool]:
    """The existing token, or a new one written to ``~/.ray/auth_token`` (mode 0600) like Ray does.

    Returns the token and whether it was created.
    """
    token = find_token(environ)
    if token is not None:
        return token, False
    path = default_token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return Token(value=value, source=str(path)), True


def redact(text: str, token: Token | None) -> str:
    """``text`` with the token's value replaced (for error messages that might echo a header)."""
    return text if token is None or not token.value else text.replace(token.value, "<token>")
