"""The architecture value: a searched ``Genotype`` or a named hand-made model.

Every layer passes this value instead of a string told apart by its first character. Its text
form (``architecture_text``) is what files store: the genotype's canonical JSON, or the model's
name; ``parse_architecture`` reads it back and names what was expected when it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_space.genotype import Genotype

__all__ = [
    "MODEL_NAMES",
    "Architecture",
    "NamedModel",
    "architecture_key",
    "architecture_text",
    "parse_architecture",
]

MODEL_NAMES: tuple[str, ...] = ("baseline",)
"""Hand-made models ``build_model`` knows besides genotypes."""


@dataclass(frozen=True)
class NamedModel:
    """A hand-made network chosen by name (``baseline``: the CNN-LSTM of ``BaselineCNNLSTM``)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.name!r}: expected one of {list(MODEL_NAMES)}.")


Architecture = Genotype | NamedModel


def architecture_text(architecture: Architecture) -> str:
    """What files store: the genotype's canonical JSON, or the model name."""
    if isinstance(architecture, Genotype):
        return architecture.to_json()
    if isinstance(architecture, NamedModel):
        return architecture.name
    raise TypeError(f"expected a Genotype or a NamedModel, but got {type(architecture).__name__}.")


def architecture_key(architecture: Architecture) -> str:
    """The leaderboard's ``genotype_hash``: the genotype's 12-hex hash, or the model name."""
    return architecture.hash if isinstance(architecture, Genotype) else architecture_text(architecture)


def parse_architecture(value: str | Architecture) -> Architecture:
    """A ``Genotype`` from its JSON, a ``NamedModel`` from its name; values pass through.

    Raises ValueError saying what was expected (genotype JSON or a model name) and, for bad
    JSON, which op or edge is wrong.
    """
    if isinstance(value, (Genotype, NamedModel)):
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"Expected a Genotype, genotype JSON or one of {list(MODEL_NAMES)}, but got {type(value).__name__}."
        )
    text = value.strip()
    if text in MODEL_NAMES:
        return NamedModel(text)
    if not text.startswith("{"):
        raise ValueError(f"Unknown model {value!r}: expected genotype JSON or one of {list(MODEL_NAMES)}.")
    return Genotype.from_json(text)
