"""Reading and writing experiment YAML: strict loading, ``--set`` overrides, dump, fingerprint."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator.config.errors import ConfigError, error_lines, short_repr
from orchestrator.config.experiment import ExperimentConfig

__all__ = ["RESUME_SAFE_FIELDS", "config_fingerprint", "dump_config", "load_config", "without_resume_safe_fields"]


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads ``1e-3`` as a float (YAML 1.2 style)."""


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_error(where: str, error: yaml.YAMLError) -> ConfigError:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    detail = f"{context}, {problem}" if context else problem
    if mark is not None:
        return ConfigError(f"{where}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: {detail}")
    return ConfigError(f"{where}: YAML syntax error: {detail}")


_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _apply_override(tree: dict[str, Any], override: str) -> None:
    """``a.b.c=value``: value parsed as YAML; missing sections are created; ``space.<name>`` keeps
    the rest of the path as one key (space names may contain dots: ``space.search.epochs=...``)."""
    key, sep, text = override.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(_KEY.match(part) for part in parts):
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE with a dotted key, e.g. tune.num_samples=8")
    if parts[0] == "space" and len(parts) > 2:
        parts = ["space", ".".join(parts[1:])]
    try:
        value = yaml.load(text, Loader=_Loader) if text.strip() else None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"--set {override!r}: the value is not valid YAML ({problem})") from None
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"--set {override!r}: {where} is {short_repr(child)}, not a section")
        node = child
    node[parts[-1]] = value


def load_config(path: str | Path, *, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML, apply ``--set key.path=value`` overrides, validate.

    Relative paths inside are taken relative to the current working directory. Raises
    ``ConfigError`` naming the file (and line, for YAML syntax) and every bad key path.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{where}: cannot read the config ({error.strerror or error})") from None
    try:
        tree = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        raise _yaml_error(where, error) from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{where}: expected a mapping of sections (name, data, folds, ...), "
            f"but the file holds {type(tree).__name__}"
        )
    for override in overrides:
        _apply_override(tree, override)
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as error:
        lines = error_lines(error, model=ExperimentConfig)
        raise ConfigError("\n".join(f"{where}: {line}" for line in lines)) from None


def dump_config(config: ExperimentConfig) -> str:
    """The config as YAML (every default filled in); ``load_config`` reads it back unchanged."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


RESUME_SAFE_FIELDS: tuple[str, ...] = (
    "description",
    "device",
    "data.cache_dir",
    "tune.max_concurrent",
    "tune.resources",
    "tune.max_failures",
    "tune.storage",
    "tune.reuse_actors",
    "tune.keep_checkpoints",
)
"""Keys left out of ``config_fingerprint``: where and how fast an experiment runs, not what it
computes; changing them does not stop a resume."""


def without_resume_safe_fields(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` (a config dumped as JSON-like data, changed in place) without ``RESUME_SAFE_FIELDS``:
    what must stay the same for a run to be resumed. A section absent from ``tree`` is skipped."""
    for key in RESUME_SAFE_FIELDS:
        *parents, leaf = key.split(".")
        node: Any = tree
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return tree


def config_fingerprint(config: ExperimentConfig) -> str:
    """A short stable hash (16 hex digits) of the config's canonical JSON, minus
    ``RESUME_SAFE_FIELDS``; an experiment is resumed only under the same fingerprint."""
    tree = without_resume_safe_fields(config.model_dump(mode="json"))
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
