"""The YAML grammar of a space entry: a fixed value, or a sampled ``Domain``.

A space maps a parameter name to a fixed value or a domain (``{choice: [...]}``, ``{uniform:
[a, b]}``, ...). This module parses and dumps those entries and nothing else: what a name
means (``orchestrator.config.trial_settings``) and how a domain is sampled
(``orchestrator.config.optuna_space``) live above it, so the grammar has no reason to change
with either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from orchestrator.config.errors import short_repr

__all__ = ["DOMAIN_KINDS", "Domain", "SpaceEntry", "dump_space_entry", "plain_value"]

DOMAIN_KINDS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")
_RANGE_ARITY = {"uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}


def _frozen_value(value: Any) -> Any:
    """Lists become tuples (hashable, immutable); everything else is kept."""
    if isinstance(value, list | tuple):
        return tuple(_frozen_value(v) for v in value)
    return value


def plain_value(value: Any) -> Any:
    """Tuples back to lists, as YAML and JSON write them (the inverse of freezing)."""
    if isinstance(value, tuple):
        return [plain_value(v) for v in value]
    return value


@dataclass(frozen=True)
class Domain:
    """A sampled parameter: ``choice``/``grid`` over ``args`` (values), or a range over ``args``.

    Ranges: ``uniform``/``loguniform`` ``(lower, upper)``, ``randint`` ``(lower, upper)`` with
    ``upper`` exclusive, ``quniform`` ``(lower, upper, q)`` (Ray: rounded to multiples of q).
    """

    kind: str
    args: tuple[Any, ...]

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Domain:
        """``{choice: [...]}`` and friends, as written in YAML; errors say what was expected."""
        if len(raw) != 1 or next(iter(raw)) not in DOMAIN_KINDS:
            keys = ", ".join(map(str, raw)) or "none"
            raise ValueError(
                f"a domain is a mapping with one key out of {', '.join(DOMAIN_KINDS)}, but got keys {keys}"
            )
        kind, args = next(iter(raw.items()))
        if not isinstance(args, list | tuple):
            raise ValueError(f"{kind} takes a list, but got {short_repr(args)}")
        if kind in ("choice", "grid"):
            if not args:
                raise ValueError(f"{kind} needs at least one value")
            return cls(kind, _frozen_value(args))
        arity = _RANGE_ARITY[kind]
        shape = "[lower, upper, q]" if arity == 3 else "[lower, upper]"
        if len(args) != arity:
            raise ValueError(f"{kind} takes {shape}, but got {short_repr(list(args))}")
        numbers = (int,) if kind == "randint" else (int, float)
        for value in args:
            if isinstance(value, bool) or not isinstance(value, numbers) or not math.isfinite(value):
                expected = "integers" if kind == "randint" else "finite numbers"
                raise ValueError(f"{kind} bounds must be {expected}, but got {short_repr(list(args))}")
        lower, upper = args[0], args[1]
        if not lower < upper:
            raise ValueError(f"{kind} needs lower < upper, but got {lower} >= {upper}")
        if kind == "loguniform" and lower <= 0:
            raise ValueError(f"loguniform needs lower > 0, but got {lower}")
        if kind == "quniform" and not args[2] > 0:
            raise ValueError(f"quniform needs q > 0, but got {args[2]}")
        return cls(kind, tuple(args))

    def to_yaml(self) -> dict[str, list[Any]]:
        return {self.kind: plain_value(self.args)}

    def probe_values(self) -> list[Any]:
        """Values that must all make valid settings: every listed value, or a range's ends plus
        one inner non-integral point (so an int setting under ``uniform`` is caught)."""
        if self.kind in ("choice", "grid"):
            return list(self.args)
        lower, upper = self.args[0], self.args[1]
        if self.kind == "randint":
            return [lower, upper - 1]
        if self.kind == "quniform":
            q = self.args[2]
            return [lower, upper, math.floor(lower / q + 1) * q] if lower + q <= upper else [lower, upper]
        inner = math.sqrt(lower * upper) * 1.0123 if self.kind == "loguniform" else lower + (upper - lower) * 0.3719
        return [lower, upper, inner if inner < upper else (lower + upper) / 2]


def _parse_space_entry(value: Any) -> Any:
    if isinstance(value, Domain):
        return value
    if isinstance(value, Mapping):
        return Domain.parse(value)
    return _frozen_value(value)


def dump_space_entry(value: Any) -> Any:
    return value.to_yaml() if isinstance(value, Domain) else plain_value(value)


SpaceEntry = Annotated[Any, BeforeValidator(_parse_space_entry), PlainSerializer(dump_space_entry)]
