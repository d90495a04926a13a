"""The one rule for names that become folder and file names (experiments, trial ids).

Letters, digits and ``_ . -``, not starting with ``. _ -``: safe as a folder on every
filesystem and as an object-store key without escaping (a ``+`` in a key is read as a space
by some S3 clients, so it is not allowed).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["NAME_RULE", "check_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
NAME_RULE = "a non-empty name of letters, digits and _ . - (not starting with one of _ . -)"


def check_name(what: str, value: Any) -> str:
    """Return ``value`` if it is a valid name, else raise ValueError naming ``what``."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"{what} must be {NAME_RULE}, because it becomes a folder name, but got {value!r}.")
    return value
