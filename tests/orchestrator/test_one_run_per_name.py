"""One experiment name, one run, through the CLI: `sernas search` refuses a name with results unless
told --resume or --restart archive|remove; `sernas demo` run again archives the earlier demo and
says so, instead of doubling the leaderboard. Real Ray (2 CPUs), real training, real Parquet."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

import orchestrator.cli.search
from conftest import write_experiment_config
from orchestrator.cli import main
from orchestrator.leaderboard import connect

pytestmark = pytest.mark.slow


def _trials(storage: Path, experiment: str) -> list[str]:
    with connect(storage, experiment=experiment) as board:
        return board.sql("SELECT DISTINCT trial_id FROM runs ORDER BY 1")["trial_id"].tolist()


def test_search_refuses_a_used_name_then_archives_it_when_told(local_ray, tmp_path, capsys):
    config = write_experiment_config(
        tmp_path / "once.yaml", name="once", samples=1, concurrent=1, folds="{scheme: loso, use: [2]}"
    )
    storage = tmp_path / "runs"
    assert main(["search", "--config", str(config)]) == 0
    first = _trials(storage, "once")
    assert len(first) == 1
    # Off a terminal (capsys), the trial board writes one plain line per event, with the counts.
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{first[0]} started ") and "(1 trials: 1 running" in line for line in lines)
    assert any(line.startswith(f"{first[0]} fold 2: valid UA ") for line in lines)
    assert any(line.startswith(f"{first[0]} completed: mean valid UA") and "1 finished" in line for line in lines)

    assert main(["search", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert "experiment 'once' already has results (Tune state in" in error
    for advice in ("sernas search --resume", "--set name=", "--restart archive", "--restart remove"):
        assert advice in error
    assert "Traceback" not in error and _trials(storage, "once") == first  # nothing ran, nothing moved

    assert main(["search", "--config", str(config), "--resume", "--restart", "remove"]) == 2
    assert "not both" in capsys.readouterr().err

    assert main(["search", "--config", str(config), "--restart", "archive"]) == 0
    out = capsys.readouterr().out
    assert "Experiment once had results" in out and f"moved to {storage}/_archive/once-" in out
    second = _trials(storage, "once")
    assert len(second) == 1 and second != first  # one run under the name: the new one
    (archive,) = (storage / "_archive").iterdir()
    assert _trials(archive, "once") == first  # the archive is a storage of its own, readable as before
    assert (archive / "once" / "data" / "config.yaml").is_file() and list((archive / "once").glob("experiment_state-*"))

    assert main(["search", "--config", str(config), "--restart", "remove"]) == 0
    assert "Experiment once had results" in capsys.readouterr().out
    third = _trials(storage, "once")
    assert len(third) == 1 and third != second and len(list((storage / "_archive").iterdir())) == 1


def test_demo_run_again_archives_the_earlier_demo(local_ray, tmp_path, capsys, monkeypatch):
    # The demo's own code path on a smaller config (same name, corpus inside the experiment folder
    # like configs/demo.yaml's runs/demo/corpus), so that it runs twice in a test's time.
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    inside = write_experiment_config(
        tmp_path / "runs" / "demo" / "demo.yaml", name="demo", samples=1, concurrent=1, folds="{scheme: loso, use: [2]}"
    )
    config = inside.rename(tmp_path / "demo.yaml")
    monkeypatch.setattr(orchestrator.cli.search, "DEMO_CONFIG", config)
    storage = tmp_path / "runs"  # the experiment folder runs/demo holds the corpus and feature cache
    assert main(["demo", "--storage", str(storage)]) == 0
    first = _trials(storage, "demo")
    assert "had results" not in capsys.readouterr().out

    terminal = Console(force_terminal=True, width=100, record=True, file=io.StringIO(), highlight=False, soft_wrap=True)
    monkeypatch.setattr(orchestrator.cli.search, "console", terminal)  # what a person at a terminal sees
    assert main(["demo", "--storage", str(storage)]) == 0
    out = terminal.export_text()
    print(out)  # (pytest -s: the screen)
    for header in ("trial", "params", "fold", "epoch", "valid UA", "mean valid", "state"):
        assert header in out  # the live table
    assert "1 trials: 0 running, 0 pending, 1 finished, 0 pruned, 0 failed" in out
    assert f"Experiment demo had results (Tune state in {storage}/demo" in out and "moved to" in out
    second = _trials(storage, "demo")
    assert len(first) == len(second) == 1 and first != second  # not doubled: the earlier demo is in _archive
    assert (storage / "demo" / "corpus").is_dir() and (storage / "demo" / "cache").is_dir()  # inputs stay
    (archive,) = (storage / "_archive").iterdir()
    assert not (archive / "demo" / "corpus").exists() and _trials(archive, "demo") == first
