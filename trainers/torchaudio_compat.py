"""Import torchaudio's pure-torch transforms on CPU-only torch builds.

torchaudio's wheels ship a compiled extension linked against a CUDA build of torch; with the
CPU wheel of torch, ``import torchaudio`` raises ``OSError`` while loading it. The transforms we
use (MFCC, MelSpectrogram, Resample) are pure torch and need none of that extension, so when the
real import fails we install a stub ``torchaudio._extension`` that reports "not available" and
import again. Audio I/O never goes through torchaudio (we read WAV with soundfile).

Import ``torchaudio`` only through this module: ``from trainers.torchaudio_compat import torchaudio``.
"""

from __future__ import annotations

import importlib
import sys
import types


def _purge_torchaudio_modules() -> None:
    for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
        del sys.modules[name]


def _stub_extension() -> types.ModuleType:
    def passthrough(func):  # the decorators the real module exports
        return func

    stub = types.ModuleType("torchaudio._extension")
    stub.__doc__ = "sernas stub: torchaudio's compiled extension is unavailable on this torch build."
    stub._IS_TORCHAUDIO_EXT_AVAILABLE = False
    stub._IS_ALIGN_AVAILABLE = False
    stub._IS_RIR_AVAILABLE = False
    stub.fail_if_no_align = passthrough
    stub.fail_if_no_rir = passthrough
    stub._check_cuda_version = lambda: None
    return stub


def _import_torchaudio() -> tuple[types.ModuleType, bool]:
    """Return (torchaudio, uses_stub)."""
    try:
        return importlib.import_module("torchaudio"), False
    except (OSError, ImportError, RuntimeError):
        _purge_torchaudio_modules()
        sys.modules["torchaudio._extension"] = _stub_extension()
        return importlib.import_module("torchaudio"), True


torchaudio, USES_EXTENSION_STUB = _import_torchaudio()
transforms = importlib.import_module("torchaudio.transforms")

__all__ = ["torchaudio", "transforms", "USES_EXTENSION_STUB"]
