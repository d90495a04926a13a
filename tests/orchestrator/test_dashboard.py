"""``sernas dashboard``: a real optuna-dashboard on 127.0.0.1 serving an experiment's studies
(one per outer fold, in one journal), read back over its HTTP API (the routes of optuna_dashboard/_app.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ray.tune.schedulers import TrialScheduler
from test_study import BAD, GOOD, bad_trial_decisions, make_searcher, run_good_trial, wilcoxon_scheduler

from orchestrator.cli import main
from orchestrator.study import StudyHandle


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_the_dashboard_serves_the_experiments_trials_on_loopback(tmp_path: Path):
    storage = tmp_path / "runs"
    handle = StudyHandle(storage=str(storage), experiment="demo")
    searcher, scheduler = make_searcher(handle, folds=(1, 2)), wilcoxon_scheduler(handle)
    run_good_trial(scheduler, searcher)  # outer fold 1
    run_good_trial(scheduler, searcher, "other")  # outer fold 2
    assert bad_trial_decisions(scheduler, searcher)[-1] == TrialScheduler.STOP  # outer fold 1, pruned at inner fold 4
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "dashboard", "--storage", str(storage), "--experiment", "demo"]
        + ["--port", str(port)],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60  # a readiness wait, not a timed assertion
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "optuna-dashboard did not answer"
                time.sleep(0.2)
        by_name = {study["study_name"]: study for study in studies}  # one study per outer fold
        assert sorted(by_name) == ["demo.fold1", "demo.fold2"]
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{by_name['demo.fold1']['study_id']}")
        other = _get(f"http://127.0.0.1:{port}/api/studies/{by_name['demo.fold2']['study_id']}")
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"optuna-dashboard {storage / 'demo' / 'optuna.journal'} --host 127.0.0.1 --port {port}" in output
    trials = {
        next(a["value"] for a in trial["user_attrs"] if a["key"] == "tune_trial_id"): trial
        for trial in detail["trials"]
    }
    assert {name: trial["state"] for name, trial in trials.items()} == {"good": "Complete", "bad": "Pruned"}
    good = trials["good"]
    assert {p["name"]: p["param_external_value"] for p in good["params"]} == {
        "weights_lr": "0.05",
        "init_channels": "8",
    }
    assert [v["value"] for v in good["intermediate_values"]] == pytest.approx(GOOD)
    assert good["values"] == pytest.approx([sum(GOOD) / 5])
    assert [v["value"] for v in trials["bad"]["intermediate_values"]] == pytest.approx(BAD[:4])
    assert {a["key"] for a in good["user_attrs"]} >= {"fold1_test_ua", "mean_test_ua"}
    [other_trial] = other["trials"]
    assert other_trial["state"] == "Complete" and other_trial["values"] == pytest.approx([sum(GOOD) / 5])


def test_no_study_is_a_clear_error(tmp_path: Path, capsys):
    assert main(["dashboard", "--storage", str(tmp_path), "--experiment", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no Optuna study of experiment 'nope'" in err and str(tmp_path / "nope" / "optuna.journal") in err
    assert not (tmp_path / "nope").exists()  # looking creates nothing
