"""Configuration errors and how a pydantic ``ValidationError`` becomes one readable message.

Every config failure names the key path, what was expected and what came, so the user can fix
the YAML without reading a traceback: ``tune.num_samples: Input should be ... (got 0)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["ConfigError", "Issue", "error_lines", "raise_at", "short_repr", "validation_message"]

Issue = tuple[tuple[str | int, ...], str, Any]
"""One problem found by a validator: ``(key path, message, offending value)``."""


class ConfigError(ValueError):
    """An experiment configuration that cannot be used; the message names file and key paths."""


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one model class an annotation holds (``X``, ``X | None``, ``tuple[X, ...]``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is None:
        return None
    models = {model for arg in get_args(annotation) if (model := _model_in(arg)) is not None}
    return models.pop() if len(models) == 1 else None


def _field_names(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str] | None:
    """The field names of the model found by walking ``loc`` from ``model`` (None if unknown);
    an index (``data.sources.1``) walks into a tuple or list of models."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _model_in(field.annotation)
    return None if current is None else list(current.model_fields)


def error_lines(error: ValidationError, *, model: type[BaseModel] | None = None) -> list[str]:
    lines = []
    for item in error.errors():
        loc = item["loc"]
        key = ".".join(str(part) for part in loc) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        kind = item["type"]
        if kind == "extra_forbidden":
            known = _field_names(model, loc[:-1])
            expected = f"; expected one of: {', '.join(known)}" if known else ""
            lines.append(f"{key}: unknown key{expected} (got {short_repr(item.get('input'))})")
        elif kind in ("missing", "value_error") or (kind == "config" and item.get("input") is None):
            lines.append(f"{key}: {message}")
        else:
            lines.append(f"{key}: {message} (got {short_repr(item.get('input'))})")
    return lines


def validation_message(error: Exception, *, model: type[BaseModel] | None = None) -> str:
    """A pydantic ValidationError as ``key.path: what was expected (got value)`` items, ``; ``-joined.

    With ``model`` (the validated model class), an unknown key also lists the known ones.
    Any other exception is returned as ``str(error)``.
    """
    if not isinstance(error, ValidationError):
        return str(error)
    return "; ".join(error_lines(error, model=model))


def raise_at(errors: list[Issue], title: str) -> None:
    """Raise one ValidationError with an error at each ``(loc, message, input)``.

    Raised inside a validator, pydantic prefixes each loc with the validator's own position, so
    ``space`` entries are reported as ``space.<name>`` rather than as one error on ``space``.
    """
    if errors:
        details = [
            InitErrorDetails(type=PydanticCustomError("config", message), loc=loc, input=value)
            for loc, message, value in errors
        ]
        raise ValidationError.from_exception_data(title, details)
