"""sernas' trainers: corpora -> manifest -> features -> folds -> DARTS search -> evaluation, one
fold at a time, without Ray or Optuna.

From Python::

    from trainers import EvalSettings, SearchSettings, load_fold_data, run_one_fold
    data = load_fold_data(manifest=manifest, folds=folds, fold=1, preset="logmel-32")
    result = run_one_fold(data, evaluation=EvalSettings(), search=SearchSettings(), device="cpu", work_dir="runs/fold1")

The names load when first used (no torch at ``import trainers``). ``run_one_fold`` is
``trainers.run_fold.run_fold`` (the package cannot hand out a function under the name of its
submodule ``trainers.run_fold``).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "run_one_fold": "trainers.run_fold",
    "FoldResult": "trainers.run_fold",
    "load_fold_data": "trainers.fold_data",
    "FoldData": "trainers.fold_data",
    "make_folds": "trainers.folds",
    "FoldProtocol": "trainers.folds",
    "given_folds": "trainers.given_folds",
    "read_given_splits": "trainers.imports",
    "export_folds": "trainers.fold_export",
    "build_manifest": "trainers.manifest",
    "EvalSettings": "trainers.settings",
    "SearchSettings": "trainers.settings",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), "run_fold" if name == "run_one_fold" else name)
