import dataclasses

import pytest
import torch
from autocast_probe import expected_dtypes, probe_conv_dtypes

import trainers.evaluate as evaluate_module
from conftest import make_fold_data
from search_space import Genotype
from trainers.checkpoint import CheckpointError, load_checkpoint
from trainers.evaluate import run_evaluation
from trainers.settings import EvalSettings, ModelShape

CPU = torch.device("cpu")
SHAPE = ModelShape(layers=2, nodes=2, init_channels=4, lstm_hidden=8, dropout=0.0)
TINY_GENOTYPE = Genotype(
    normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("avg_pool_3x3", 1), ("skip_connect", 2), ("sep_conv_3x3", 0)],
    reduce_concat=[2, 3],
)


def settings(**changes) -> EvalSettings:
    return EvalSettings(shape=SHAPE, epochs=changes.pop("epochs", 3), batch_size=16, **changes)


def test_baseline_learns_a_learnable_problem():
    result = run_evaluation(
        make_fold_data(n_train=96),
        architecture="baseline",
        settings=settings(epochs=12, weights={"lr": 0.1}),
        device=CPU,
    )
    assert result.test["ua"] >= 0.75 and result.test["n"] == 24
    assert sum(map(sum, result.test["confusion"])) == 24  # every test sample counted once
    assert 1 <= result.best_epoch <= 12 and result.params > 0


def test_test_speakers_never_influence_training_or_selection():
    data = make_fold_data()
    scrambled = dataclasses.replace(
        data, test=dataclasses.replace(data.test, x=torch.full_like(data.test.x, float("nan")), y=data.test.y.flip(0))
    )
    first = run_evaluation(data, architecture="baseline", settings=settings(), device=CPU)
    second = run_evaluation(scrambled, architecture="baseline", settings=settings(), device=CPU)

    def without_timings(history):
        return [{k: v for k, v in h.items() if "seconds" not in k} for h in history]

    assert without_timings(first.history) == without_timings(second.history)
    assert (first.best_epoch, first.valid) == (second.best_epoch, second.valid)


def test_epoch_is_chosen_on_validation_ua():
    result = run_evaluation(make_fold_data(), architecture="baseline", settings=settings(epochs=4), device=CPU)
    valid_uas = [h["valid_ua"] for h in result.history]
    assert result.best_epoch == valid_uas.index(max(valid_uas)) + 1
    assert result.valid["ua"] == max(valid_uas)


def test_genotype_network_trains_and_reports_every_epoch():
    calls = []
    result = run_evaluation(
        make_fold_data(),
        architecture=TINY_GENOTYPE,
        settings=settings(epochs=2),
        device=CPU,
        reporter=lambda step, metrics: calls.append((step, metrics)),
    )
    assert [step for step, _ in calls] == [1, 2]
    assert {"phase", "train_loss", "valid_ua", "valid_wa", "best_epoch"} <= set(calls[0][1])
    assert result.architecture == TINY_GENOTYPE.to_json()


class Stop(Exception):
    pass


def test_resume_after_an_interruption_gives_the_uninterrupted_result(tmp_path):
    data = make_fold_data()
    uninterrupted = run_evaluation(data, architecture="baseline", settings=settings(), device=CPU)

    def stop_after_first(step, metrics):
        if step == 1:
            raise Stop

    with pytest.raises(Stop):
        run_evaluation(
            data,
            architecture="baseline",
            settings=settings(),
            device=CPU,
            reporter=stop_after_first,
            checkpoint_path=tmp_path / "eval.pt",
        )
    assert (tmp_path / "eval.pt").exists()  # written before the reporter could stop the run
    resumed = run_evaluation(
        data, architecture="baseline", settings=settings(), device=CPU, checkpoint_path=tmp_path / "eval.pt"
    )
    assert resumed.test == uninterrupted.test and resumed.best_epoch == uninterrupted.best_epoch
    assert [h["valid_ua"] for h in resumed.history] == [h["valid_ua"] for h in uninterrupted.history]


def test_a_raising_reporter_leaves_the_epochs_checkpoint_on_disk_even_when_not_due(tmp_path):
    """reporting.py's promise: a reporter may raise, and the epoch just finished is then on disk
    (here epoch 1, with checkpoint_every=5 not due until the last epoch); a rerun resumes from it."""
    data, path = make_fold_data(), tmp_path / "eval.pt"
    config = settings(checkpoint_every=5)
    uninterrupted = run_evaluation(data, architecture="baseline", settings=config, device=CPU)
    reported = []

    def stop_at_first(step, metrics):
        reported.append(step)
        raise Stop

    with pytest.raises(Stop):
        run_evaluation(
            data, architecture="baseline", settings=config, device=CPU, reporter=stop_at_first, checkpoint_path=path
        )
    state = load_checkpoint(path)
    assert reported == [1] and state["kind"] == "evaluate" and state["epoch"] == 1 and len(state["history"]) == 1

    resumed_steps = []
    resumed = run_evaluation(
        data,
        architecture="baseline",
        settings=config,
        device=CPU,
        reporter=lambda step, metrics: resumed_steps.append(step),
        checkpoint_path=path,
    )
    assert resumed_steps == [2, 3]  # epoch 1 is not trained again
    assert resumed.test == uninterrupted.test and resumed.best_epoch == uninterrupted.best_epoch
    assert [h["valid_ua"] for h in resumed.history] == [h["valid_ua"] for h in uninterrupted.history]


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    data = make_fold_data()
    run_evaluation(
        data, architecture="baseline", settings=settings(epochs=1), device=CPU, checkpoint_path=tmp_path / "eval.pt"
    )
    with pytest.raises(ValueError, match="its 'settings' is"):
        run_evaluation(
            data,
            architecture="baseline",
            settings=settings(epochs=2, seed=5),
            device=CPU,
            checkpoint_path=tmp_path / "eval.pt",
        )
    (tmp_path / "eval.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="eval.pt is unreadable"):
        run_evaluation(
            data, architecture="baseline", settings=settings(epochs=1), device=CPU, checkpoint_path=tmp_path / "eval.pt"
        )


@pytest.mark.parametrize("mixed_precision", [True, False])
def test_mixed_precision_trains_and_measures_in_bf16_only_when_enabled(monkeypatch, mixed_precision):
    """bf16 autocast (meant for GPUs) also runs on CPU: the weight steps and the measurements
    compute in bf16 when enabled, in fp32 when not; metrics stay finite."""
    seen = probe_conv_dtypes(monkeypatch, evaluate_module, builder="build_network")
    result = run_evaluation(
        make_fold_data(),
        architecture=TINY_GENOTYPE,
        settings=settings(epochs=2, mixed_precision=mixed_precision),
        device=CPU,
    )
    assert seen == expected_dtypes(mixed_precision)
    assert all(h["train_loss"] == h["train_loss"] for h in result.history)  # no NaN
    assert 0.0 <= result.test["ua"] <= 1.0 and sum(map(sum, result.test["confusion"])) == 24


def test_training_with_two_threads_does_not_crash_torch():
    """The layout the trainers give their networks must survive torch's multi-threaded CPU backward:
    with channels_last, torch 2.13 segfaulted here (dilated 5x5 convs, a batch of 13, 2 threads)."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import torch
torch.set_num_threads(2)
from trainers.evaluate import train_final_model
from trainers.fold_data import Split
from trainers.settings import EvalSettings, ModelShape
genotype = ('{"normal":[["skip_connect",0],["dil_conv_5x5",1],["dil_conv_5x5",0],["dil_conv_5x5",2]],"normal_concat":[2,3],'
            '"reduce":[["sep_conv_5x5",0],["sep_conv_3x3",1],["dil_conv_3x3",0],["skip_connect",2]],"reduce_concat":[2,3]}')
split = Split(x=torch.randn(29, 1, 32, 32), y=torch.arange(29) % 4, utt_ids=tuple(str(i) for i in range(29)))
settings = EvalSettings(shape=ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8), epochs=2, batch_size=16)
train_final_model(split, architecture=genotype, settings=settings, n_classes=4, epochs=2, device=torch.device("cpu"))
print("trained")
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "trained" in done.stdout, done.stderr[-2000:]


def test_evaluation_network_is_widened_and_deepened_independently_of_the_search_shape():
    from trainers.evaluate import build_network

    plain = build_network(TINY_GENOTYPE, settings=settings(widen=1.0, auxiliary_weight=0.0), n_classes=4, in_channels=1)
    grown = build_network(TINY_GENOTYPE, settings=settings(widen=2.0, deepen=1), n_classes=4, in_channels=1)
    assert (len(plain.cells), len(grown.cells)) == (SHAPE.layers, SHAPE.layers + 1)
    assert grown.config["init_channels"] == 2 * SHAPE.init_channels
    assert plain.aux_head is None and plain.mask_padding


def test_auxiliary_head_trains_with_its_weighted_loss_and_is_not_used_to_predict():
    from trainers.evaluate import build_network
    from trainers.training import weight_step

    net = build_network(TINY_GENOTYPE, settings=settings(auxiliary_weight=0.4), n_classes=4, in_channels=1)
    before = net.aux_head.classifier.weight.detach().clone()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y, lengths = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3]), torch.tensor([16, 9, 12, 5])
    weight_step(
        net, x, y, loss_fn=torch.nn.CrossEntropyLoss(), optimizer=optimizer,
        parameters=list(net.parameters()), grad_clip=5.0, lengths=lengths, aux_weight=0.4,
    )  # fmt: skip
    assert not torch.equal(before, net.aux_head.classifier.weight)  # only its own loss reaches it
    # Predicting (eval mode) never runs the auxiliary head: scrambling it changes no logit.
    net.eval()
    with torch.no_grad():
        logits = net(x, lengths)
        assert net.forward_with_aux(x, lengths)[1] is None
        for parameter in net.aux_head.parameters():
            parameter.add_(torch.randn_like(parameter))
        assert torch.equal(net(x, lengths), logits)
        net.train()
        assert net.forward_with_aux(x, lengths)[1] is not None  # while training it does run


def test_mask_padding_off_lets_the_padding_count():
    from trainers.evaluate import build_network

    x, lengths = torch.randn(2, 1, 16, 16), torch.tensor([6, 10])
    longer = torch.cat([x, torch.zeros(2, 1, 16, 16)], dim=-1)  # (2, 1, 16, 32): more padding
    for mask, moved in ((True, False), (False, True)):
        torch.manual_seed(0)
        net = build_network("baseline", settings=settings(mask_padding=mask), n_classes=4, in_channels=1).eval()
        with torch.no_grad():
            change = (net(longer, lengths) - net(x, lengths)).abs().max()
        assert (change > 1e-3) == moved, (mask, float(change))


def test_a_checkpoint_from_before_absent_classes_resumes_with_them(tmp_path):
    """Checkpoints written before the metrics named absent classes: derived from the stored confusion."""
    from trainers.checkpoint import save_checkpoint
    from trainers.fold_data import Split

    data = make_fold_data(n_train=24, n_valid=12, n_test=12)
    keep = data.valid.y != 1  # no validation utterance of class c1
    valid = Split(
        x=data.valid.x[keep],
        y=data.valid.y[keep],
        utt_ids=tuple(u for u, k in zip(data.valid.utt_ids, keep.tolist()) if k),
        speakers=tuple(s for s, k in zip(data.valid.speakers, keep.tolist()) if k),
    )
    data, path = dataclasses.replace(data, valid=valid), tmp_path / "eval.pt"
    first = run_evaluation(data, architecture="baseline", settings=settings(epochs=1), device=CPU, checkpoint_path=path)
    assert first.valid["absent_classes"] == [1] and first.test["absent_classes"] == []
    state = load_checkpoint(path)
    del state["best"]["valid"]["absent_classes"]  # as an older checkpoint holds it
    save_checkpoint(state, path)
    resumed = run_evaluation(
        data, architecture="baseline", settings=settings(epochs=1), device=CPU, checkpoint_path=path
    )
    assert resumed.valid == first.valid and resumed.test == first.test


def test_a_checkpoint_from_before_a_setting_existed_resumes_under_its_default_and_only_there(tmp_path):
    """The head options (eval.shape.sequence_input, ...) came after some checkpoints were written:
    such a checkpoint ran with their defaults, so it resumes under them and is refused otherwise."""
    from trainers.checkpoint import CheckpointError, save_checkpoint

    data, path = make_fold_data(n_train=24, n_valid=12, n_test=12), tmp_path / "eval.pt"
    first = run_evaluation(data, architecture="baseline", settings=settings(epochs=1), device=CPU, checkpoint_path=path)
    state = load_checkpoint(path)
    for name in ("sequence_input", "frequency_bins", "sequence_projection", "pooling"):
        del state["settings"]["shape"][name]  # as a checkpoint written before the head options holds them
    save_checkpoint(state, path)
    resumed = run_evaluation(
        data, architecture="baseline", settings=settings(epochs=1), device=CPU, checkpoint_path=path
    )
    assert resumed.valid == first.valid and resumed.test == first.test
    stats = settings(epochs=1).model_copy(update={"shape": settings().shape.model_copy(update={"pooling": "stats"})})
    with pytest.raises(CheckpointError, match="shape.pooling"):
        run_evaluation(data, architecture="baseline", settings=stats, device=CPU, checkpoint_path=path)
