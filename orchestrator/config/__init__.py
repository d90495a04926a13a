"""Experiment configuration: one YAML file -> one validated, frozen ``ExperimentConfig``.

An experiment names its data (corpus, classes, merges, feature preset), its folds, the base
settings of every trial's search and evaluation (the trainers' own ``SearchSettings`` and
``EvalSettings``, so defaults and bounds live in one place), a *space* of parameters that Ray
Tune samples per trial, and how Tune runs (searcher, pruner, resources, storage). The schema is
documented, with an annotated example, in ``docs/config.md``.

Everything is checked at load time: an unknown or ill-typed key, a NaN learning rate, or a
space domain any of whose values would make invalid trial settings fails before Ray starts,
with a ``ConfigError`` naming the file and each bad key path, what was expected and what came::

    configs/x.yaml: tune.num_samples: Input should be greater than or equal to 1 (got 0)

Public API: ``load_config``, ``settings_for_trial``, ``optuna_distributions``, ``fixed_tune_params``,
``config_fingerprint``, ``dump_config``, ``validation_message``; the models. One module per
concept: ``errors`` (ConfigError, messages), ``models`` (data, folds), ``tune`` (searcher,
pruner, resources), ``domain`` (the YAML grammar of space entries), ``trial_settings`` (what a
space name sets, a trial's settings), ``optuna_space`` (the space as Optuna distributions and
fixed Tune values), ``experiment`` (``ExperimentConfig``), ``loading`` (YAML in and out,
fingerprint). Each module imports only those listed before it, so only ``loading`` and this
package import ``experiment`` (tests/orchestrator/test_config.py holds that).
"""

from orchestrator.config.domain import DOMAIN_KINDS, Domain
from orchestrator.config.errors import ConfigError, validation_message
from orchestrator.config.experiment import ExperimentConfig
from orchestrator.config.loading import (
    RESUME_SAFE_FIELDS,
    config_fingerprint,
    dump_config,
    load_config,
    without_resume_safe_fields,
)
from orchestrator.config.models import DataConfig, FoldsConfig, SyntheticOptions
from orchestrator.config.optuna_space import fixed_tune_params, optuna_distributions
from orchestrator.config.trial_settings import SHORTHANDS, settings_for_trial
from orchestrator.config.tune import PRUNER_KINDS, PRUNER_OPTIONS, PrunerConfig, ResourcesConfig, TuneConfig

__all__ = [
    "DOMAIN_KINDS",
    "PRUNER_KINDS",
    "PRUNER_OPTIONS",
    "RESUME_SAFE_FIELDS",
    "SHORTHANDS",
    "ConfigError",
    "DataConfig",
    "Domain",
    "ExperimentConfig",
    "FoldsConfig",
    "PrunerConfig",
    "ResourcesConfig",
    "SyntheticOptions",
    "TuneConfig",
    "config_fingerprint",
    "dump_config",
    "load_config",
    "settings_for_trial",
    "fixed_tune_params",
    "optuna_distributions",
    "validation_message",
    "without_resume_safe_fields",
]
