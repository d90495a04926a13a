"""The experiment: one validated, frozen ``ExperimentConfig`` and the checks across its sections.

Cross-section rules live here (a space value must make valid settings for the chosen searcher;
a Wilcoxon pruner must be able to prune with the chosen folds); each section checks itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError, field_validator, model_validator

from orchestrator.config.domain import Domain, SpaceEntry, dump_space_entry, plain_value
from orchestrator.config.errors import Issue, raise_at, short_repr, validation_message
from orchestrator.config.models import SPLIT_FILE_DATASETS, DataConfig, FoldsConfig, StrictModel
from orchestrator.config.trial_settings import SHORTHANDS, build_settings, settings_path_error, targets
from orchestrator.config.tune import TuneConfig
from orchestrator.names import NAME_RULE, check_name
from trainers.device import DEVICE_SPEC_HELP, check_device_spec, device_spec_problem
from trainers.folds import training_corpora
from trainers.settings import EvalSettings, SearchSettings

if TYPE_CHECKING:
    from trainers.folds import FoldProtocol  # imported when used: it pulls in pandas

__all__ = ["ExperimentConfig"]


class ExperimentConfig(StrictModel):
    """One experiment: see docs/config.md for every key."""

    name: str = Field(description=f"experiment name, used in file names: {NAME_RULE}")
    description: str = ""
    device: str = Field(
        "auto",
        description=f"{DEVICE_SPEC_HELP}; checked against tune.resources.gpu (a trial given a GPU trains on it, "
        "as cuda:0, or fails)",
    )
    reproducible: bool = Field(
        False,
        description="deterministic algorithms on CUDA (trainers.reproducibility.reproducible_mode): same seed, "
        "same genotype on one GPU model, at a cost in speed (docs/gpu.md)",
    )
    data: DataConfig
    folds: FoldsConfig
    search: SearchSettings = SearchSettings()
    eval: EvalSettings = EvalSettings()
    space: dict[str, SpaceEntry] = Field(default_factory=dict)
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_storage(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("name"), str):
            tune = data.get("tune", {})
            if isinstance(tune, Mapping) and tune.get("storage") is None:
                data = {**data, "tune": {**tune, "storage": "runs"}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_pruner(cls, data: Any) -> Any:
        """No pruner given: Wilcoxon over inner folds when there are inner folds, else none
        (with one validation split per outer fold there is nothing for it to compare)."""
        if not isinstance(data, Mapping):
            return data
        tune, folds = data.get("tune", {}), data.get("folds", {})
        if isinstance(tune, Mapping) and tune.get("pruner") is None and isinstance(folds, Mapping):
            kind = "wilcoxon" if folds.get("inner") is not None else "none"
            data = {**data, "tune": {**tune, "pruner": {"kind": kind}}}
        return data

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        return check_name("name", value)  # the name is also a folder in the storage and leaderboard

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device_spec(value)

    @field_validator("space")
    @classmethod
    def _known_names(cls, space: dict[str, Any]) -> dict[str, Any]:
        errors: list[Issue] = []
        claimed: dict[str, str] = {}
        for name, entry in space.items():
            if name not in SHORTHANDS:
                if not name.startswith(("search.", "eval.")):
                    errors.append(
                        (
                            (name,),
                            f"unknown parameter; expected one of: {', '.join(SHORTHANDS)}, "
                            "or a dotted setting path starting with search. or eval.",
                            dump_space_entry(entry),
                        )
                    )
                    continue
                reason = settings_path_error(name)
                if reason:
                    errors.append(((name,), reason, dump_space_entry(entry)))
                    continue
            for path in targets(name):
                if path in claimed:
                    errors.append(
                        ((name,), f"sets {path}, which {claimed[path]} already sets", dump_space_entry(entry))
                    )
                claimed.setdefault(path, name)
        raise_at(errors, "space")
        return space

    @model_validator(mode="after")
    def _coherent(self) -> ExperimentConfig:
        errors: list[Issue] = []
        base = {"search": self.search, "eval": self.eval}
        fixed = {name: entry for name, entry in self.space.items() if not isinstance(entry, Domain)}
        for name, value in fixed.items():
            try:
                build_settings(base, {name: value})
            except ValidationError as error:
                errors.append(
                    (("space", name), f"makes invalid settings: {validation_message(error)}", plain_value(value))
                )
        if not errors:
            try:
                build_settings(base, fixed)
            except ValidationError as error:
                errors.append(
                    (
                        ("space",),
                        f"the fixed values together make invalid settings: {validation_message(error)}",
                        {n: plain_value(v) for n, v in fixed.items()},
                    )
                )
        raise_at(errors, "ExperimentConfig")  # domains are probed on top of valid fixed values
        for name, entry in self.space.items():
            if not isinstance(entry, Domain):
                continue
            for value in entry.probe_values():
                try:
                    build_settings(base, {**fixed, name: value})
                except ValidationError as error:
                    errors.append(
                        (
                            ("space", name),
                            f"{entry.kind} value {short_repr(plain_value(value))} makes "
                            f"invalid settings: {validation_message(error)}",
                            entry.to_yaml(),
                        )
                    )
                    break
            if entry.kind == "grid" and self.tune.searcher == "optuna-tpe":
                errors.append(
                    (
                        ("space", name),
                        "grid domains are not supported by searcher optuna-tpe; use "
                        "searcher grid or random, or a choice domain",
                        entry.to_yaml(),
                    )
                )
            if entry.kind != "grid" and self.tune.searcher == "grid":
                errors.append(
                    (
                        ("space", name),
                        f"searcher grid needs every domain to be a grid (or a fixed value), but this is {entry.kind}",
                        entry.to_yaml(),
                    )
                )
        if self.tune.multi_objective and self.tune.searcher != "optuna-tpe":
            errors.append(
                (
                    ("tune", "multi_objective"),
                    f"multi_objective needs searcher optuna-tpe, but searcher is {self.tune.searcher!r}",
                    True,
                )
            )
        if self.tune.multi_objective and self.tune.pruner.kind != "none":
            errors.append(
                (
                    ("tune", "pruner"),
                    "Optuna prunes single-objective studies only, but tune.multi_objective is on: use pruner "
                    "none, or one objective",
                    self.tune.pruner.model_dump(),
                )
            )
        errors.extend(self._given_folds_have_files())
        errors.extend(self._cross_corpus_has_sources())
        errors.extend(self._wilcoxon_reachable())
        errors.extend(self._seeds_are_replicates())
        errors.extend(self._epoch_steps_align())
        device_problem = device_spec_problem(self.device, gpus=self.tune.resources.gpu)
        if device_problem is not None:
            errors.append((("device",), device_problem, self.device))
        raise_at(errors, "ExperimentConfig")
        return self

    def _given_folds_have_files(self) -> list[Issue]:
        """``folds.scheme: given`` reads the folds of split files: data.dataset must be their format
        and data.root their folder (data.manifest may hold the manifest made from them)."""
        if self.folds.scheme != "given":
            return []
        if self.data.dataset not in SPLIT_FILE_DATASETS:
            return [
                (
                    ("folds", "scheme"),
                    f"given folds come from split files: data.dataset must be one of {', '.join(SPLIT_FILE_DATASETS)}, "
                    f"but it is {self.data.dataset!r}",
                    "given",
                )
            ]
        if self.data.root is None:
            return [(("data", "root"), "folds.scheme given reads the folds from the split files at data.root", None)]
        return []

    def _cross_corpus_has_sources(self) -> list[Issue]:
        """``folds.scheme: cross-corpus`` reads several corpora (``data.sources``), and only it does; its
        test and training corpora are sources, and every fold keeps a corpus to train on."""
        folds, names = self.folds, self.data.source_names()
        if folds.scheme != "cross-corpus":
            if self.data.sources is None:
                return []
            return [
                (
                    ("folds", "scheme"),
                    f"data.sources holds several corpora, which folds.scheme cross-corpus splits (train on some, test "
                    f"on another), but the scheme is {folds.scheme!r}",
                    folds.scheme,
                )
            ]
        if self.data.sources is None:
            return [
                (
                    ("data", "sources"),
                    "folds.scheme cross-corpus trains on some corpora and tests on another: list them in data.sources "
                    "(each with dataset, root or manifest, and its merges) instead of data.dataset",
                    None,
                )
            ]
        errors: list[Issue] = []
        for key in ("test_corpora", "train_corpora"):
            unknown = [name for name in getattr(folds, key) or () if name not in names]
            if unknown:
                errors.append(
                    (
                        ("folds", key),
                        f"unknown corpus {', '.join(map(repr, unknown))}; the corpora of data.sources are "
                        f"{', '.join(names)}",
                        list(getattr(folds, key)),
                    )
                )
        if errors:
            return errors
        for test in folds.test_corpora or ():
            if not training_corpora(test, corpora=names, train_corpora=folds.train_corpora):
                errors.append(
                    (
                        ("folds", "train_corpora"),
                        f"the fold testing on {test} has no corpus to train on (a fold never trains on its test corpus)",
                        list(folds.train_corpora or ()),
                    )
                )
        n_folds = len(folds.test_corpora or ())
        beyond = [fold for fold in folds.use or () if fold > n_folds]
        if beyond:
            errors.append(
                (
                    ("folds", "use"),
                    f"fold(s) {beyond} do not exist: cross-corpus has one fold per test corpus, 1..{n_folds}",
                    list(folds.use or ()),
                )
            )
        return errors

    def _wilcoxon_reachable(self) -> list[Issue]:
        """A Wilcoxon pruner over too few inner folds can never reach its p threshold: say so now.

        It compares a trial with its outer fold's best trial inner fold by inner fold, so without
        ``folds.inner`` (one validation split per outer fold) it has nothing to compare.
        """
        pruner = self.tune.pruner
        if pruner.kind != "wilcoxon":
            return []
        inner = self.folds.inner or 1
        # Before the last inner fold, at most inner - 1 paired differences exist, and the one-sided
        # exact Wilcoxon test on n differences cannot go below 0.5 ** n.
        steps = inner - 1
        p_threshold, n_startup_steps = pruner.options["p_threshold"], pruner.options["n_startup_steps"]
        if steps < max(2, n_startup_steps) or 0.5**steps >= p_threshold:
            return [
                (
                    ("tune", "pruner"),
                    f"wilcoxon compares a trial with its outer fold's best trial over inner folds and cannot prune "
                    f"any trial before its last one: with folds.inner {self.folds.inner} it compares at most {steps} "
                    f"inner-fold UA(s), but it needs at least {max(2, n_startup_steps)} (2 and n_startup_steps) and "
                    f"the smallest possible p-value, {0.5 ** max(steps, 0):g}, must be below p_threshold "
                    f"{p_threshold}; set folds.inner (e.g. 4), a higher p_threshold, or another pruner",
                    pruner.model_dump(),
                )
            ]
        return []

    def _seeds_are_replicates(self) -> list[Issue]:
        """A sampled seed would let validation pick lucky seeds, which is selection on noise."""
        sampled = [name for name in ("seed", "search.seed", "eval.seed") if isinstance(self.space.get(name), Domain)]
        if not sampled:
            return []
        name = sampled[0]
        entry = self.space[name]
        return [
            (
                ("space", name),
                "seeds are replicates, not a hyperparameter (choosing the luckiest seed is selection on noise): "
                "fix it (e.g. seed: 0) and replicate chosen genotypes over seeds with sernas cross-eval --seeds",
                entry.to_yaml(),
            )
        ]

    def _epoch_steps_align(self) -> list[Issue]:
        """Epoch-level pruners compare trials at one step = one phase, epoch and inner fold; that
        holds only when every trial runs the same numbers of search and evaluation epochs."""
        if self.tune.pruner.kind not in ("median", "hyperband"):
            return []
        varying = [name for name in ("search.epochs", "eval.epochs") if isinstance(self.space.get(name), Domain)]
        return [
            (
                ("space", name),
                f"pruner {self.tune.pruner.kind} compares trials at the same phase and epoch, which needs {name} to "
                "be the same in every trial: fix it, or use pruner wilcoxon or none",
                self.space[name].to_yaml(),
            )
            for name in varying
        ]

    def fold_protocol(self) -> FoldProtocol:
        """The ``FoldProtocol`` of this experiment (classes, merges, improvised-only, folds; with sources,
        each corpus's merges and the test and training corpora)."""
        from trainers.folds import FoldProtocol

        return FoldProtocol(
            scheme=self.folds.scheme,
            classes=self.data.classes,
            merges=self.data.merges,
            improvised_only=self.data.improvised_only,
            valid_speakers=self.folds.valid_speakers,
            arch_share=self.folds.arch_share,
            seed=self.folds.seed,
            test_corpora=self.folds.test_corpora or (),
            train_corpora=self.folds.train_corpora,
            corpus_merges={source.name: source.merges for source in self.data.sources or ()},
        )
