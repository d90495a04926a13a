"""What a corpus reader returns: plain records plus every problem it found.

Problems are reported together instead of one traceback at a time: a corpus of 10,000 files with three broken ones should tell the user about all three in one
run, with the file (and line) and what was expected, so corpus readers collect
``CorpusProblem``s and keep going; only a problem that makes the whole corpus unreadable (a
missing root) raises ``CorpusError`` at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Audio shorter than this is rejected when a manifest is built (``build_manifest(min_duration_s=)``,
# ``sernas manifest --min-duration``, ``data.min_duration_s``). IEMOCAP's shortest real turns last
# ~0.6 s; a quarter of a second is a syllable at most, and a file that short is far more often a
# cut-off or an empty turn than speech with an emotion (the features would zero-pad it silently).
DEFAULT_MIN_DURATION_S = 0.25


@dataclass(frozen=True, slots=True)
class CorpusProblem:
    path: Path
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.reason}"


class CorpusError(ValueError):
    """The corpus cannot be read at all, or has problems and ``skip_bad`` was not requested."""

    def __init__(self, message: str, problems: Sequence[CorpusProblem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    def __str__(self) -> str:
        lines = [self.args[0]]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


@dataclass(slots=True)
class CorpusScan:
    """Records (one dict per labelled utterance, manifest columns except the audio facts,
    which the manifest adds after probing each file) and the problems met on the way."""

    dataset: str
    root: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[CorpusProblem] = field(default_factory=list)

    def problem(self, path: Path, reason: str, line: int | None = None) -> None:
        self.problems.append(CorpusProblem(path=path, reason=reason, line=line))


def is_macos_litter(path: Path) -> bool:
    """macOS AppleDouble files (``._name``) sit beside real files in copied corpora; skip them."""
    return path.name.startswith("._")
