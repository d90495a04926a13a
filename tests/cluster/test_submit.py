"""Submit pieces without a cluster: entrypoint, runtime env, token handling, CLI errors."""

import shlex
from pathlib import Path

import pytest

from cluster.auth import find_token, redact
from cluster.cli import main
from cluster.submit import (
    RUNTIME_ENV_EXCLUDES,
    build_cross_eval_entrypoint,
    build_entrypoint,
    build_runtime_env,
    job_path,
    resolve_address,
)

ROOT = Path(__file__).resolve().parents[2]


def test_entrypoint_is_sernas_search_joining_the_cluster():
    line = build_entrypoint(
        config="configs/demo.yaml", overrides=["tune.num_samples=8", "data.root=/a b"], storage="s3://bucket/runs"
    )
    assert shlex.split(line) == [
        "sernas",
        "search",
        "--config",
        "configs/demo.yaml",
        "--set",
        "tune.num_samples=8",
        "--set",
        "data.root=/a b",
        "--storage",
        "s3://bucket/runs",
        "--address",
        "auto",
    ]


def test_a_submitted_search_can_resume_or_start_afresh():
    resumed = shlex.split(build_entrypoint(config="c.yaml", storage="/r", resume=True))
    assert resumed[resumed.index("--storage") + 2] == "--resume" and resumed[-2:] == ["--address", "auto"]
    restarted = shlex.split(build_entrypoint(config="c.yaml", restart="archive"))
    assert restarted[restarted.index("--restart") + 1] == "archive"
    with pytest.raises(ValueError, match="exclude each other"):
        build_entrypoint(config="c.yaml", resume=True, restart="remove")
    with pytest.raises(ValueError, match="--restart must be one of archive, remove"):
        build_entrypoint(config="c.yaml", restart="wipe")


def test_cross_eval_entrypoint_joins_the_cluster():
    line = build_cross_eval_entrypoint(
        storage="s3://bucket/runs", experiment="demo", top=2, genotypes=["baseline"], seeds=3
    )
    assert shlex.split(line) == [
        "sernas",
        "cross-eval",
        "--storage",
        "s3://bucket/runs",
        "--experiment",
        "demo",
        "--top",
        "2",
        "--genotype",
        "baseline",
        "--seeds",
        "3",
        "--address",
        "auto",
    ]
    assert shlex.split(build_cross_eval_entrypoint(storage="/r", experiment="demo", resume=True))[-3:] == [
        "--resume",
        "--address",
        "auto",
    ]
    sourced = shlex.split(build_cross_eval_entrypoint(storage="/r", experiment="demo", top=1, settings="source"))
    assert sourced[sourced.index("--settings") + 1] == "source"


def test_runtime_env_excludes_data_caches_and_outputs():
    env = build_runtime_env(ROOT)
    assert env["working_dir"] == str(ROOT) and "pip" not in env
    for pattern in (".venv", "runs", ".git", "**/__pycache__", "*.parquet", ".cache", "benchmarks/results"):
        assert pattern in env["excludes"]
    assert build_runtime_env(ROOT, pip_install_project=True)["pip"] == ["-e", "."]
    assert set(env["excludes"]) == set(RUNTIME_ENV_EXCLUDES)


def test_job_paths_are_relative_inside_the_working_dir(tmp_path):
    assert job_path(ROOT / "configs" / "demo.yaml", ROOT) == "configs/demo.yaml"
    assert job_path(tmp_path / "x.yaml", ROOT) == str((tmp_path / "x.yaml").resolve())


def test_token_lookup_follows_rays_order_and_never_shows_the_value(tmp_path):
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert find_token({"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(path)}).value == "from-env"
    token = find_token({"RAY_AUTH_TOKEN_PATH": str(path)})
    assert token.value == "from-file" and token.source == str(path)
    assert "from-file" not in repr(token) and "from-file" not in str(token) and "from-file" not in f"{token}"
    assert token.headers() == {"Authorization": "Bearer from-file"}
    assert redact("header Bearer from-file", token) == "header Bearer <token>"
    assert find_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")}) is None


def test_address_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_address(None, state_path=tmp_path / "none.json") == "http://127.0.0.1:8265"
    assert resolve_address("10.0.0.1:8265") == "http://10.0.0.1:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert resolve_address(None) == "http://head:8265"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["submit"], "give --config"),
        (["submit", "--config", "nope.yaml"], "config nope.yaml does not exist"),
        (["submit", "--stop", "raysubmit_x", "--config", "configs/demo.yaml"], "--stop JOB_ID takes no --config"),
        (["submit", "--cross-eval", "demo", "--top", "2"], "--cross-eval needs --storage"),
        (
            ["submit", "--cross-eval", "demo", "--storage", "/r"],
            "--cross-eval needs --top N, --genotype HASH|JSON|baseline and/or --random K",
        ),
        (
            ["submit", "--config", "configs/demo.yaml", "--top", "2"],
            "--top, --genotype, --seeds, --settings and --random go with",
        ),
        (
            ["submit", "--config", "configs/demo.yaml", "--settings", "source"],
            "--settings and --random go with --cross-eval",
        ),
        (["submit", "--config", "configs/demo.yaml", "--random", "3"], "--settings and --random go with --cross-eval"),
        (["submit", "--config", "configs/demo.yaml", "--resume", "--restart", "remove"], "exclude each other"),
        (["submit", "--cross-eval", "demo", "--storage", "/r", "--restart", "archive"], "--restart goes with --config"),
        (["cluster", "local", "--workers", "-1", "--state", "{tmp}/s.json"], "workers must be in 0..16"),
        (["cluster", "stop", "--state", "{tmp}/s.json"], "no local cluster state"),
    ],
)
def test_user_mistakes_exit_2_naming_the_thing(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "x" * 16)  # so `cluster local` never writes ~/.ray/auth_token
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_job_server_is_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret-value-123")
    config = ROOT / "configs" / "demo.yaml"
    assert main(["submit", "--address", "http://127.0.0.1:9", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "http://127.0.0.1:9" in err and "secret-value-123" not in err


def test_the_base_commands_are_still_there(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("search", "demo", "cross-eval", "leaderboard", "submit", "cluster"):
        assert command in out
