"""Kill the driver of a running cross-eval with SIGKILL, then finish it with --resume."""

import os
import shutil
import tempfile

import pandas as pd
import pytest
from test_driver_killed import _sernas

from conftest import kill_driver_when, kill_ray_processes_of
from conftest import write_experiment_config as write_config
from orchestrator.leaderboard import connect, cross_eval_summary

pytestmark = pytest.mark.slow


def _cross_eval_rows(storage) -> int:
    with connect(storage, experiment="xres") as board:
        return len(board.sql("SELECT * FROM runs WHERE stage = 'cross-eval' AND status = 'completed'"))


def test_cross_eval_resumes_after_its_driver_is_killed(tmp_path):
    config = write_config(tmp_path / "xres.yaml", name="xres", samples=1, eval_epochs=3, per_speaker=8)
    storage = tmp_path / "runs"
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": os.getcwd()}
    # 2 genotypes x 2 seeds = 4 trials on 2 CPUs: when the first fold row appears, two trials have
    # not started, and with the driver killed they cannot, so the kill always leaves work to resume
    # (whatever the timing: the two running trials may still finish before their workers die).
    arguments = ["--storage", str(storage), "--experiment", "xres", "--top", "1", "--genotype", "baseline"]
    arguments += ["--seeds", "2"]
    try:
        search = _sernas("search", "--config", str(config), env=env)
        output, _ = search.communicate(timeout=400)
        assert search.returncode == 0, output
        kill_ray_processes_of(ray_tmp)

        first = _sernas("cross-eval", *arguments, env=env)
        killed_at = kill_driver_when(
            first,
            lambda: _cross_eval_rows(storage) > 0,
            ray_tmp=ray_tmp,
            timeout=240,
            poll=0.5,
            what="the first finished cross-eval fold",
        )
        before = _cross_eval_rows(storage)
        assert 1 <= before < 8

        second = _sernas("cross-eval", *arguments, "--resume", env=env)
        output, _ = second.communicate(timeout=400)
        assert second.returncode == 0, output
        assert "4 trials (4 completed, 0 failed)" in output, output
    finally:
        kill_ray_processes_of(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    with connect(storage, experiment="xres") as board:
        runs = board.sql(
            "SELECT trial_id, genotype_hash, fold, status, attempt, written_at FROM runs WHERE stage = 'cross-eval'"
        )
        table = cross_eval_summary(board, experiment="xres")
        search_rows = board.sql("SELECT count(*) AS n FROM runs WHERE stage = 'search'")["n"][0]
    assert len(runs) == 8 and set(runs["status"]) == {"completed"}  # 2 genotypes x 2 folds x 2 seeds, once each
    assert not runs.duplicated(["trial_id", "fold"]).any() and runs["trial_id"].nunique() == 4
    # Every fold missing at the kill was finished by the resumed driver (by a restarted trial or by
    # one that had not started). A fold whose row was written just before the kill, while Tune had
    # not yet received its checkpoint, is run again and its newer row replaces the old one, so more
    # than 8 - before rows may be newer than the kill.
    assert (pd.to_datetime(runs["written_at"], utc=True) > killed_at).sum() >= 8 - before
    assert table["pairs"].tolist() == [4, 4] and table["complete"].all()
    assert search_rows == 2  # the search's own rows: untouched
