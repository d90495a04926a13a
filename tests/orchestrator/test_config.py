"""Experiment configs: what loads, what fails (and how the message names the key), trial settings."""

import ast
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.config import (
    SHORTHANDS,
    ConfigError,
    Domain,
    ExperimentConfig,
    config_fingerprint,
    dump_config,
    fixed_tune_params,
    load_config,
    optuna_distributions,
    settings_for_trial,
)
from trainers.settings import EvalSettings, SearchSettings

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))

MINIMAL = """\
name: tiny
data:
  dataset: synthetic
  root: corpus
  preset: logmel-32
  classes: [neu, hap, sad, ang]
  merges: {exc: hap}
folds:
  scheme: speaker-pairs
  use: [1, 2, 3]
search:
  epochs: 2
  weights: {lr: 0.05}
eval:
  epochs: 3
space:
  layers: {choice: [3, 4]}
  weights_lr: {loguniform: [0.01, 0.1]}
  seed: 0
tune:
  num_samples: 4
  pruner: {kind: median}
"""


@pytest.fixture
def write(tmp_path):
    def write(text: str = MINIMAL, name: str = "x.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def error_of(path: Path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides=overrides)
    return str(caught.value)


# --------------------------------------------------------------------------- shipped configs
def test_the_four_shipped_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"demo", "iemocap-paper", "iemocap-loso", "msp-improv"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_and_round_trips(path):
    config = load_config(path)
    assert config.name == path.stem
    assert ExperimentConfig.model_validate(config.model_dump()) == config
    assert ExperimentConfig.model_validate(yaml.safe_load(dump_config(config))) == config
    params = {name: entry.args[0] for name, entry in config.space.items() if isinstance(entry, Domain)}
    search, evaluation = settings_for_trial(config, params)
    assert isinstance(search, SearchSettings) and isinstance(evaluation, EvalSettings)


def test_demo_is_small_and_the_paper_config_follows_the_paper():
    demo = load_config(REPO / "configs/demo.yaml")
    assert demo.data.dataset == "synthetic" and demo.data.preset == "logmel-32"
    assert demo.search.epochs <= 3 and demo.eval.epochs <= 8 and demo.tune.num_samples >= 3
    assert demo.folds.scheme == "speaker-pairs" and len(demo.folds.use) >= 2  # several outer folds, a study each
    assert demo.folds.inner == 3 and demo.tune.pruner.kind == "wilcoxon"  # pruning over inner folds
    assert "seed" in demo.space and not hasattr(demo.space["seed"], "kind")  # seeds are replicates, never sampled
    assert demo.tune.resources.cpu == 1 and demo.tune.resources.gpu == 0
    paper = load_config(REPO / "configs/iemocap-paper.yaml")
    assert paper.data.dataset == "iemocap" and paper.data.improvised_only
    assert paper.data.classes == ("neu", "hap", "sad", "ang") and paper.data.preset == "paper-mfcc"
    assert paper.folds.scheme == "speaker-pairs" and paper.folds.use is None
    assert paper.search.epochs == paper.eval.epochs == 50
    assert (paper.search.shape.layers, paper.search.shape.nodes, paper.search.shape.init_channels) == (4, 4, 8)
    assert paper.tune.resources.gpu == 0.25
    msp = load_config(REPO / "configs/msp-improv.yaml")
    assert msp.data.dataset == "msp-improv" and msp.folds.scheme == "loso"


def test_the_wavlm_config_follows_emoboxs_protocol(tmp_path):
    config = load_config(REPO / "configs/iemocap-wavlm.yaml")
    assert config.data.dataset == "iemocap" and not config.data.improvised_only  # all five sessions
    assert config.data.classes == ("neu", "hap", "sad", "ang") and dict(config.data.merges) == {"exc": "hap"}
    assert config.folds.scheme == "loso" and config.folds.use is None
    assert config.data.preset == "wavlm-large" and config.data.weights is None  # torch hub's cache
    assert config.eval.shape.ssl_projection == 64 and "ssl_projection" in config.space
    weights = tmp_path / "wavlm_large.pth"
    text = (REPO / "configs/iemocap-wavlm.yaml").read_text().replace("weights: null", f"weights: {weights}")
    (tmp_path / "iemocap-wavlm.yaml").write_text(text)
    assert load_config(tmp_path / "iemocap-wavlm.yaml").data.weights == weights  # checked when used, not loaded


def test_loading_a_config_does_not_import_ray():
    code = (
        "import sys; from orchestrator.config import load_config; load_config('configs/demo.yaml'); "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# orchestrator/config's modules, lowest first (docs/config.md's table): each imports only those before it.
CONFIG_LAYERS = ("errors", "models", "tune", "domain", "trial_settings", "optuna_space", "experiment", "loading")


def _config_imports(module: str) -> set[str]:
    """The orchestrator.config modules a module imports anywhere (TYPE_CHECKING and function bodies too)."""
    tree = ast.parse((REPO / "orchestrator/config" / f"{module}.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y / from . import x
                base = ".".join(["orchestrator", "config"][: 3 - node.level] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "orchestrator.config" or name.startswith("orchestrator.config."):
                imported.add(name.removeprefix("orchestrator.config").removeprefix(".").split(".")[0] or "__init__")
    return imported & ({"__init__"} | set(CONFIG_LAYERS))


def test_config_modules_import_only_lower_ones_so_there_is_no_cycle():
    files = {path.stem for path in (REPO / "orchestrator/config").glob("*.py")} - {"__init__"}
    assert files == set(CONFIG_LAYERS), "place a new orchestrator/config module in CONFIG_LAYERS (and docs/config.md)"
    for position, module in enumerate(CONFIG_LAYERS):
        upward = _config_imports(module) - set(CONFIG_LAYERS[:position])
        assert not upward, f"orchestrator/config/{module}.py imports {sorted(upward)}, which sit above it"
    for module in ("domain", "trial_settings", "optuna_space"):
        assert "experiment" not in _config_imports(module)


def test_relative_paths_are_taken_from_the_working_directory(write, tmp_path, monkeypatch):
    path = write()
    monkeypatch.chdir(tmp_path / "..")
    config = load_config(path)
    assert config.data.root == Path.cwd() / "corpus"
    assert config.tune.storage == str(Path.cwd() / "runs")  # default: runs (Tune state in runs/<name>)
    uri = load_config(path, overrides=["tune.storage=s3://bucket/runs"])
    assert uri.tune.storage == "s3://bucket/runs"


def test_fold_protocol_is_the_data_and_folds_sections(write):
    config = load_config(write(), overrides=["folds.seed=7", "folds.valid_speakers=2", "data.improvised_only=true"])
    protocol = config.fold_protocol()
    assert (protocol.scheme, protocol.classes, dict(protocol.merges)) == (
        "speaker-pairs",
        ("neu", "hap", "sad", "ang"),
        {"exc": "hap"},
    )
    assert (protocol.improvised_only, protocol.valid_speakers, protocol.seed) == (True, 2, 7)


# ------------------------------------------------------------------------------ bad configs
def test_unknown_key_names_its_path_and_the_known_ones(write):
    message = error_of(write(MINIMAL.replace("num_samples: 4", "num_sampels: 4")))
    assert "x.yaml: tune.num_sampels: unknown key" in message
    assert "num_samples" in message.split("tune.num_sampels")[1]


def test_ill_typed_value_names_path_and_expected_type(write):
    message = error_of(write(MINIMAL.replace("epochs: 2", "epochs: two")))
    assert "x.yaml: search.epochs: Input should be a valid integer" in message and "(got 'two')" in message


def test_every_bad_key_is_reported(write):
    message = error_of(write(), "tune.num_samples=0", "data.preset=mfcc", "folds.scheme=kfold")
    assert "tune.num_samples: Input should be greater than or equal to 1 (got 0)" in message
    assert "data.preset: unknown feature preset 'mfcc'; expected one of: paper-mfcc" in message
    assert "folds.scheme: Input should be 'loso', 'speaker-pairs', 'given' or 'cross-corpus' (got 'kfold')" in message
    assert all(line.startswith(f"{write()}: ") for line in message.splitlines())


@pytest.mark.parametrize(
    "value, reason", [(".nan", "finite number"), ("-1", "greater than 0"), ("0", "greater than 0")]
)
def test_bad_learning_rate_names_the_key(write, value, reason):
    message = error_of(write(), f"search.weights.lr={value}")
    assert "search.weights.lr: " in message and reason in message


@pytest.mark.parametrize(
    "domain, reason",
    [
        ("{loguniform: [-1, 0.1]}", "loguniform needs lower > 0"),
        ("{choice: [0.1, .nan]}", "finite number"),
        ("{uniform: [-0.1, 0.1]}", "greater than 0"),
        ("{choice: [0.1, 0.0001]}", "lr_min (0.001) must not exceed lr (0.0001)"),
        ("-0.5", "greater than 0"),
    ],
)
def test_bad_learning_rate_in_a_space_domain_names_the_space_key(write, domain, reason):
    message = error_of(write(), f"space.weights_lr={domain}")
    assert "x.yaml: space.weights_lr: " in message and reason in message


def test_unknown_space_names_and_bad_domains(write):
    path = write()
    assert "space.layrs: unknown parameter; expected one of: layers" in error_of(path, "space.layrs=3")
    message = error_of(path, "space.search.epochz={choice: [1, 2]}")
    assert "space.search.epochz: search has no setting 'epochz'" in message
    assert "space.search.weights: search.weights is a group" in error_of(path, "space.search.weights=1")
    message = error_of(path, "space.layers={choise: [3]}")
    assert "space.layers: a domain is a mapping with one key out of choice" in message
    assert "randint bounds must be integers" in error_of(path, "space.layers={randint: [2, 4.5]}")
    assert "uniform needs lower < upper" in error_of(path, "space.dropout={uniform: [0.5, 0.1]}")
    # A float range over an integer setting fails at load, not in the middle of a trial.
    assert "space.layers: uniform value" in error_of(path, "space.layers={uniform: [2, 5]}")
    assert "sets search.shape.layers, which layers already sets" in error_of(path, "space.search.shape.layers=4")
    message = error_of(path, "space.primitives={choice: [[sep_conv_3x3], [none]]}")
    assert "space.primitives: choice value ['none'] makes invalid settings" in message


def test_searchers_and_domains_must_fit(write):
    path = write()
    message = error_of(path, "tune.searcher=grid")
    assert "space.layers: searcher grid needs every domain to be a grid" in message
    assert "space.weights_lr: searcher grid needs" in message
    assert "space.seed" not in message  # fixed values are fine in a grid
    ok = load_config(path, overrides=["tune.searcher=grid", "space.layers={grid: [3, 4]}", "space.weights_lr=0.05"])
    assert ok.space["layers"] == Domain("grid", (3, 4))
    assert "grid domains are not supported by searcher optuna-tpe" in error_of(path, "space.seed={grid: [0, 1]}")
    assert "multi_objective needs searcher optuna-tpe" in error_of(
        path, "tune.multi_objective=true", "tune.searcher=random"
    )


def test_data_pruner_and_resources_checks(write):
    path = write()
    message = error_of(path, "data.classes=[neu, sad]")
    assert "data.merges.exc: merge target 'hap' is not among classes neu, sad" in message
    assert "data.synthetic.speakers: speakers must be even" in error_of(path, "data.synthetic.speakers=3")
    assert "data.synthetic: options for dataset synthetic" in error_of(
        path, "data.dataset=csv", "data.synthetic.seed=1"
    )
    assert "tune.pruner.p_threshold: not an option of pruner 'median'" in error_of(path, "tune.pruner.p_threshold=0.2")
    assert "tune.resources.gpu: gpu above 1 must be a whole number" in error_of(path, "tune.resources.gpu=1.5")
    assert "tune.resources.cpu: Input should be greater than 0" in error_of(path, "tune.resources.cpu=0")
    assert "name: name must be a non-empty name of letters" in error_of(path, "name=../escape")
    assert "device: device must be one of auto, cpu, cuda or cuda:N" in error_of(path, "device=gpu")
    assert load_config(path, overrides=["device=cuda", "tune.resources.gpu=0.5"]).tune.resources.gpu == 0.5
    config = load_config(path)
    assert config.data.synthetic.speakers == 10  # filled in for dataset synthetic
    assert config.tune.pruner.model_dump() == {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 0}
    assert config.tune.pruner.model_dump(exclude={"kind"}) == config.tune.pruner.options


def test_wilcoxon_over_too_few_inner_folds_is_refused_with_the_fix(write):
    path = write()
    message = error_of(path, "tune.pruner={kind: wilcoxon}", "folds.inner=3")
    assert "tune.pruner: wilcoxon compares a trial with its outer fold's best trial over inner folds" in message
    assert "set folds.inner" in error_of(path, "tune.pruner={kind: wilcoxon}")  # no inner folds: nothing to compare
    pruner = load_config(path, overrides=["tune.pruner={kind: wilcoxon}", "folds.inner=5"]).tune.pruner
    assert pruner.options == {"p_threshold": 0.1, "n_startup_steps": 2}  # Optuna's defaults, 4 differences
    assert load_config(path, overrides=["tune.pruner={kind: none}", "folds.use=[1]"]).tune.pruner.options == {}


def test_the_default_pruner_follows_the_inner_folds(write):
    path = write()
    assert load_config(path, overrides=["tune.pruner=null"]).tune.pruner.kind == "none"
    assert load_config(path, overrides=["tune.pruner=null", "folds.inner=5"]).tune.pruner.kind == "wilcoxon"


def test_seeds_are_replicates_never_a_sampled_parameter(write):
    path = write()
    message = error_of(path, "space.seed={grid: [0, 1]}")
    assert "space.seed: seeds are replicates, not a hyperparameter" in message
    assert load_config(path, overrides=["space.seed=3"]).space["seed"] == 3


def test_two_objectives_take_no_pruner(write):
    message = error_of(write(), "tune.multi_objective=true", "tune.pruner={kind: median}")
    assert "tune.pruner: Optuna prunes single-objective studies only" in message


def test_epoch_pruners_need_the_same_epochs_in_every_trial(write):
    path = write()
    message = error_of(path, "tune.pruner={kind: median}", "space.search.epochs={choice: [1, 2]}")
    assert "space.search.epochs: pruner median compares trials at the same phase and epoch" in message


def test_yaml_syntax_error_names_file_and_line(write):
    text = MINIMAL.replace("  epochs: 3\n", "  epochs: 3\n   oops: here\n")  # over-indented key
    bad_line = text.splitlines().index("   oops: here") + 1
    path = write(text)
    assert error_of(path).startswith(f"{path}:{bad_line}:8: YAML syntax error: mapping values are not allowed")
    path = write(MINIMAL + "tune2: {a: [1, 2}\n")
    assert error_of(path).startswith(f"{path}:{len(MINIMAL.splitlines()) + 1}:")
    assert f"{path}:2:1: YAML syntax error" in error_of(write("name: a\nname: b\n"))  # duplicate key
    assert "expected a mapping of sections" in error_of(write("- a\n"))
    assert "cannot read the config" in error_of(path.with_name("missing.yaml"))


# ---------------------------------------------------------------------------------- overrides
def test_overrides_nested_new_keys_lists_and_domains(write):
    config = load_config(
        write(),
        overrides=[
            "tune.num_samples=8",
            "data.classes=[neu, sad, ang]",
            "data.merges={}",
            "space.layers={choice: [3, 4, 5]}",
            "space.search.epochs={choice: [1, 2]}",  # a dotted space name stays one key
            "tune.pruner={kind: none}",  # (an epoch pruner needs the same epochs in every trial)
            "search.alphas.lr=1e-3",  # YAML 1.2 float, not the string '1e-3'
            "tune.resources.gpu=0.25",  # resources is absent from the file: created
            "folds.use=null",
        ],
    )
    assert config.tune.num_samples == 8 and config.data.classes == ("neu", "sad", "ang")
    assert config.space["layers"] == Domain("choice", (3, 4, 5))
    assert config.space["search.epochs"] == Domain("choice", (1, 2))
    assert config.search.alphas.lr == 0.001 and config.tune.resources.gpu == 0.25 and config.folds.use is None


@pytest.mark.parametrize(
    "override, expected",
    [
        ("tune.num_samples", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("tune..num_samples=3", "expected KEY=VALUE"),
        ("tune.num_samples=[1", "the value is not valid YAML"),
        ("name.part=1", "name is 'tiny', not a section"),
    ],
)
def test_malformed_override_names_the_override(write, override, expected):
    message = error_of(write(), override)
    assert f"--set {override!r}: {expected}" in message


# ------------------------------------------------------------------------------------ trials
def test_settings_for_trial_applies_shorthands_to_search_and_eval(write):
    config = load_config(
        write(),
        overrides=[
            "space.order={choice: [first, second]}",
            "space.drop_path_prob={uniform: [0.0, 0.3]}",
            "space.primitives={choice: [[sep_conv_3x3, skip_connect], [dil_conv_3x3]]}",
            "space.eval.weights.momentum=0.8",
        ],
    )
    search, evaluation = settings_for_trial(
        config,
        {
            "layers": np.int64(4),
            "weights_lr": 0.02,
            "order": "second",
            "drop_path_prob": 0.2,
            "primitives": "sep_conv_3x3,skip_connect",
        },
    )
    assert search.shape.layers == evaluation.shape.layers == 4
    assert search.weights.lr == evaluation.weights.lr == 0.02
    assert search.seed == evaluation.seed == 0  # fixed space value, both
    assert search.order == "second" and evaluation.drop_path_prob == 0.2
    assert search.primitives == ("sep_conv_3x3", "skip_connect")
    assert evaluation.weights.momentum == 0.8 and search.weights.momentum == 0.9
    assert search.epochs == 2 and evaluation.epochs == 3  # the base settings stay
    assert config.search.shape.layers == 4  # the config itself is untouched (frozen)


def test_head_options_are_shape_shorthands_for_search_and_eval(write):
    config = load_config(
        write(), overrides=["space.pooling={choice: [mean, stats]}", "space.sequence_input=frequency-channels"]
    )
    search, evaluation = settings_for_trial(config, {"layers": 3, "weights_lr": 0.05, "pooling": "stats"})
    assert search.shape.head == evaluation.shape.head
    assert (evaluation.shape.pooling, evaluation.shape.sequence_input) == ("stats", "frequency-channels")


def test_settings_for_trial_enforces_bounds_and_names(write):
    config = load_config(write())
    with pytest.raises(ConfigError, match=r"search\.weights\.lr: Input should be greater than 0"):
        settings_for_trial(config, {"layers": 3, "weights_lr": -0.1})
    with pytest.raises(ConfigError, match="finite number"):
        settings_for_trial(config, {"layers": 3, "weights_lr": math.nan})
    with pytest.raises(ConfigError, match="not in the space"):
        settings_for_trial(config, {"layers": 3, "weights_lr": 0.05, "lstm_hiden": 8})
    with pytest.raises(ConfigError, match="lack the sampled weights_lr"):
        settings_for_trial(config, {"layers": 3})


def test_every_shorthand_reaches_real_settings():
    for name, paths in SHORTHANDS.items():
        for path in paths:
            root, *parts = path.split(".")
            model = SearchSettings if root == "search" else EvalSettings
            for part in parts:
                assert part in model.model_fields, (name, path)
                model = model.model_fields[part].annotation


def test_the_space_becomes_optuna_distributions_whose_samples_make_settings(write):
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    config = load_config(
        write(),
        overrides=[
            "tune.searcher=random",
            "space.lstm_hidden={randint: [8, 33]}",
            "space.dropout={uniform: [0.0, 0.5]}",
            "space.weight_decay={quniform: [0.0001, 0.001, 0.0001]}",
            "space.primitives={choice: [[sep_conv_3x3, skip_connect], [dil_conv_3x3]]}",
            "space.nodes=3",
        ],
    )
    distributions = optuna_distributions(config)
    assert distributions["layers"] == CategoricalDistribution([3, 4])
    assert distributions["weights_lr"] == FloatDistribution(0.01, 0.1, log=True)
    assert distributions["lstm_hidden"] == IntDistribution(8, 32)  # Ray's upper bound is exclusive
    assert distributions["primitives"].choices == ("sep_conv_3x3,skip_connect", "dil_conv_3x3")
    assert "nodes" not in distributions and fixed_tune_params(config)["nodes"] == 3
    # Whatever an outer fold's study samples, settings_for_trial accepts.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        sampled = {**fixed_tune_params(config), **study.ask(fixed_distributions=distributions).params}
        search, evaluation = settings_for_trial(config, sampled)
        assert 8 <= search.shape.lstm_hidden < 33 and search.shape.lstm_hidden == evaluation.shape.lstm_hidden


# ------------------------------------------------------------------------------- fingerprint
def test_fingerprint_is_stable_and_tracks_what_is_computed(write):
    path = write()
    first = config_fingerprint(load_config(path))
    assert first == config_fingerprint(load_config(path)) and len(first) == 16
    reordered = write(
        MINIMAL.replace("  epochs: 2\n  weights: {lr: 0.05}\n", "  weights: {lr: 0.05}\n  epochs: 2\n"), name="y.yaml"
    )
    assert config_fingerprint(load_config(reordered)) == first  # key order does not matter
    assert config_fingerprint(load_config(path, overrides=["search.epochs=3"])) != first
    assert config_fingerprint(load_config(path, overrides=["space.layers={choice: [3, 5]}"])) != first
    # Where and how fast it runs may change on resume.
    assert (
        config_fingerprint(
            load_config(
                path,
                overrides=[
                    "tune.max_concurrent=8",
                    "tune.storage=/elsewhere",
                    "device=cpu",
                    "tune.keep_checkpoints=10",
                ],
            )
        )
        == first
    )
    # A subprocess (another interpreter, another hash seed) agrees.
    code = f"from orchestrator.config import *; print(config_fingerprint(load_config({str(path)!r})))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == first


def test_the_annotated_example_in_the_docs_loads(tmp_path):
    text = (REPO / "docs/config.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    config = load_config(path)
    assert config.space["primitives"].args[1] == ("sep_conv_3x3", "dil_conv_3x3")
    assert set(optuna_distributions(config)) | set(fixed_tune_params(config)) == set(config.space)


@pytest.mark.parametrize(
    ("device", "gpu", "expected"),
    [
        (
            "cuda:1",
            0.5,
            "device: device cuda:1 cannot exist inside a trial: Ray makes only the trial's own GPU visible",
        ),
        ("cuda", 0, "device: device cuda needs a GPU per trial, but tune.resources.gpu is 0"),
        ("cuda:0", 0, "device: device cuda:0 needs a GPU per trial"),
        ("cpu", 0.25, "device: device cpu with tune.resources.gpu 0.25 reserves GPU share that no trial uses"),
        ("auto", 2, "device: a trial trains on one GPU, so tune.resources.gpu above 1 (2) leaves GPUs idle"),
    ],
)
def test_the_device_is_checked_against_the_trials_gpu_share(write, device, gpu, expected):
    assert expected in error_of(write(), f"device={device}", f"tune.resources.gpu={gpu}")


@pytest.mark.parametrize(("device", "gpu"), [("auto", 0), ("cpu", 0), ("auto", 0.25), ("cuda", 1), ("cuda:0", 0.5)])
def test_devices_a_trial_can_use_load(write, device, gpu):
    config = load_config(write(), overrides=[f"device={device}", f"tune.resources.gpu={gpu}"])
    assert config.device == device and config.tune.resources.gpu == gpu


# ------------------------------------------------------------------------------- cross-corpus
CROSS = """\
name: cross
data:
  preset: logmel-32
  classes: [neu, hap, sad, ang]
  sources:
    - {name: source, dataset: synthetic, root: source, merges: {exc: hap}}
    - {name: target, dataset: synthetic, root: target, synthetic: {seed: 1}}
folds: {scheme: cross-corpus, test_corpora: [target]}
"""


def test_a_cross_corpus_config_names_its_corpora_and_their_class_mapping(write, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(write(CROSS))
    assert config.data.dataset is None and config.data.source_names() == ("source", "target")
    assert [corpus.root for corpus in config.data.corpora()] == [tmp_path / "source", tmp_path / "target"]
    assert config.data.sources[1].synthetic.seed == 1 and config.data.sources[0].synthetic.seed == 0
    protocol = config.fold_protocol()
    assert (protocol.scheme, protocol.test_corpora, protocol.train_corpora) == ("cross-corpus", ("target",), None)
    assert protocol.corpus_merges == {"source": {"exc": "hap"}, "target": {}}
    assert protocol.training_corpora("target") == ("source",)
    assert ExperimentConfig.model_validate(yaml.safe_load(dump_config(config))) == config
    # A source's name defaults to its dataset (or the corpus of split files).
    named = load_config(
        write(CROSS.replace("{name: source, dataset: synthetic", "{dataset: synthetic"), name="named.yaml"),
        overrides=["folds.test_corpora=[target]"],
    )
    assert named.data.source_names() == ("synthetic", "target")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            [("merges: {exc: hap}", "merges: {exc: happy}")],
            "data.sources.0.merges.exc: merge target 'happy' is not among classes neu, hap, sad, ang",
        ),
        (
            [("name: target", "name: source")],
            "data.sources.1.name: sources 0 and 1 are both named 'source': give each corpus its own name",
        ),
        (["data.root=corpus"], "data.root: with sources, give root per corpus (data.sources[i].root)"),
        (["data.dataset=iemocap"], "data.dataset: with sources, give dataset per corpus"),
        (["data.merges={exc: hap}"], "data.merges: with sources, each corpus maps its own labels"),
        (["data.classes=null"], "data.classes: sources need the classes every corpus is mapped to"),
        (["folds.scheme=loso", "folds.test_corpora=null"], "folds.scheme: data.sources holds several corpora"),
        (["folds.test_corpora=[msp]"], "folds.test_corpora: unknown corpus 'msp'; the corpora of data.sources are"),
        (["folds.test_corpora=null"], "folds.test_corpora: scheme cross-corpus needs the corpora to test on"),
        (["folds.test_corpora=[target, target]"], "folds.test_corpora: must name each corpus once"),
        (
            ["folds.train_corpora=[target]"],
            "folds.train_corpora: the fold testing on target has no corpus to train on",
        ),
        (["folds.use=[2]"], "folds.use: fold(s) [2] do not exist: cross-corpus has one fold per test corpus, 1..1"),
        (
            [("root: source", "rot: source")],
            "data.sources.0.rot: unknown key; expected one of: dataset, root, manifest, min_duration_s",
        ),
        ([("root: source, ", "")], "data.sources.0: give root (a corpus to scan) or"),
        (
            [("name: source", "name: a/b")],
            "data.sources.0.name: name must be a non-empty name of letters",
        ),
    ],
)
def test_bad_cross_corpus_configs_name_the_key(write, overrides, expected):
    """``overrides``: --set overrides, or (old, new) replacements in the sources' YAML."""
    text = CROSS
    for old, new in [o for o in overrides if isinstance(o, tuple)]:
        text = text.replace(old, new, 1)
    assert expected in error_of(write(text), *[o for o in overrides if isinstance(o, str)])


def test_cross_corpus_and_sources_go_together(write):
    one = write(CROSS.replace("    - {name: target, dataset: synthetic, root: target, synthetic: {seed: 1}}\n", ""))
    assert "data.sources: Tuple should have at least 2 items" in error_of(one)
    single = write()  # one corpus: cross-corpus needs sources, and its keys belong to it
    assert "data.sources: folds.scheme cross-corpus trains on some corpora and tests on another" in error_of(
        single, "folds={scheme: cross-corpus, test_corpora: [x]}"
    )
    assert "folds.test_corpora: applies to scheme cross-corpus, but scheme is 'speaker-pairs'" in error_of(
        single, "folds.test_corpora=[x]"
    )
    assert "data.dataset: give dataset (one corpus) or sources" in error_of(single, "data.dataset=null")
