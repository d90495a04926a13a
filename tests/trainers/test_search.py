import math
from dataclasses import replace

import pytest
import torch
from autocast_probe import expected_dtypes, probe_conv_dtypes
from torch import nn
from torch.func import functional_call

import trainers.search as search_module
from conftest import make_fold_data
from search_space import PARAMETER_FREE_OPS, PRIMITIVES, Genotype, SuperNet, sample_genotypes
from trainers.architect import DARTS_FD_SCALE, architecture_gradients, beta_decay_loss
from trainers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainers.fold_data import Split
from trainers.reproducibility import seed_everything
from trainers.search import (
    SearchResult,
    build_supernet,
    run_search,
    score_genotypes_with_shared_weights,
    split_for_arch_data,
)
from trainers.settings import ArchOptimizer, ModelShape, SearchSettings
from trainers.training import weight_step

CPU = torch.device("cpu")
TINY_NET = dict(layers=3, nodes=2, init_channels=4, n_classes=3, lstm_hidden=8)
REQUIRED_KEYS = {
    "phase",
    "epoch",
    "train_loss",
    "valid_ua",
    "valid_wa",
    "valid_macro_f1",
    "valid_loss",
    "genotype_hash",
    "genotype",
    "alpha_entropy",
    "lr",
    "seconds",
}
TIMING_KEYS = {"seconds", "elapsed_seconds"}


def tiny_data(**overrides):
    return make_fold_data(**{"n_train": 24, "n_valid": 12, "n_test": 12, **overrides})


def settings(**overrides) -> SearchSettings:
    values = dict(shape=ModelShape(layers=3, nodes=2, init_channels=4, lstm_hidden=8), epochs=2, batch_size=8)
    return SearchSettings(**{**values, **overrides})


def without_timings(history):
    return [{k: v for k, v in metrics.items() if k not in TIMING_KEYS} for metrics in history]


class StopSearch(Exception):
    """What a pruner's exception looks like to the search."""


class Recorder:
    def __init__(self, stop_at: int | None = None):
        self.calls, self.stop_at = [], stop_at

    def __call__(self, step, metrics):
        self.calls.append((step, metrics))
        if step == self.stop_at:
            raise StopSearch(f"stop at {step}")


# ------------------------------------------------------------------ the second-order gradient


def batches(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda n: (torch.randn(n, 1, 16, 16, generator=g, dtype=dtype), torch.arange(n) % 3)  # noqa: E731
    return make(8), make(8), make(8)  # warm-up, train, arch


def tiny_double_net(dropout: float, *, smooth: bool) -> SuperNet:
    """The tiny supernet in float64 (no recomputation); ``smooth`` swaps ReLU for Softplus and
    drops max-pooling, so that the loss is smooth at DARTS' finite-difference scale."""
    primitives = tuple(p for p in PRIMITIVES if p != "max_pool_3x3") if smooth else PRIMITIVES
    torch.manual_seed(0)
    net = SuperNet(**TINY_NET, dropout=dropout, pc_k=1, checkpoint=False, primitives=primitives).double()
    if smooth:
        for module in list(net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.ReLU):
                    setattr(module, name, nn.Softplus())
    with torch.no_grad():  # alphas away from uniform, so the problem is generic
        for p in net.arch_parameters():
            p.copy_(torch.randn_like(p))
    return net.train()


def exact_unrolled_gradient(net, optimizer, train, arch, loss_fn, seed):
    """d/d alpha of L_val(w - xi (mu m + grad_w L_train(w, alpha) + wd w), alpha), by double backprop,
    with the dropout seeds architecture_gradients documents (train passes: seed; arch pass: seed + 1)."""
    names, weights = zip(*net.named_weight_parameters())
    group = optimizer.param_groups[0]
    xi, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
    torch.manual_seed(seed)
    train_loss = loss_fn(net(train[0]), train[1])
    grads = torch.autograd.grad(train_loss, weights, create_graph=True, allow_unused=True)
    unrolled = {}
    for name, p, g in zip(names, weights, grads):
        g = torch.zeros_like(p) if g is None else g
        unrolled[name] = p - xi * (mu * optimizer.state[p]["momentum_buffer"] + g + wd * p)
    torch.manual_seed(seed + 1)
    val_loss = loss_fn(functional_call(net, unrolled, (arch[0],)), arch[1])
    return [g.detach() for g in torch.autograd.grad(val_loss, list(net.arch_parameters()))]


@pytest.mark.parametrize(
    ("smooth", "dropout", "fd_scale"),
    [
        (True, 0.0, DARTS_FD_SCALE),  # DARTS' eps on a smooth net
        (True, 0.5, DARTS_FD_SCALE),  # dropout: the finite-difference passes must share their masks
        (False, 0.3, 1e-6),  # the real operations (ReLU, max-pool kinks): exact as eps -> 0
    ],
)
def test_second_order_gradient_matches_exact_unrolled_gradient(smooth, dropout, fd_scale):
    net, loss_fn = tiny_double_net(dropout, smooth=smooth), nn.CrossEntropyLoss()
    warm, train, arch = batches()
    weights = list(net.weight_parameters())
    optimizer = torch.optim.SGD(weights, lr=0.2, momentum=0.9, weight_decay=3e-4)
    weight_step(net, *warm, loss_fn=loss_fn, optimizer=optimizer, parameters=weights, grad_clip=5.0)  # momentum

    exact = exact_unrolled_gradient(net, optimizer, train, arch, loss_fn, seed=123)
    second, _ = architecture_gradients(
        net,
        train_batch=train,
        arch_batch=arch,
        loss_fn=loss_fn,
        weight_optimizer=optimizer,
        order="second",
        seed=123,
        fd_scale=fd_scale,
    )
    first, _ = architecture_gradients(
        net, train_batch=train, arch_batch=arch, loss_fn=loss_fn, weight_optimizer=optimizer, order="first", seed=123
    )
    exact, second, first = (torch.cat([g.flatten() for g in grads]) for grads in (exact, second, first))
    tolerance = 1e-3 * float(exact.abs().max())
    torch.testing.assert_close(second, exact, rtol=1e-3, atol=tolerance)
    # The second-order term is far from vanishing (the released code's eps^2 scaling made it ~0).
    assert float((second - first).abs().max()) > 20 * tolerance


def test_architecture_step_changes_neither_weights_nor_batchnorm_stats():
    torch.manual_seed(0)
    net = SuperNet(**TINY_NET, dropout=0.3).train()
    loss_fn = nn.CrossEntropyLoss()
    warm, train, arch = batches(torch.float32)
    weights = list(net.weight_parameters())
    optimizer = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    weight_step(net, *warm, loss_fn=loss_fn, optimizer=optimizer, parameters=weights, grad_clip=5.0)
    for p in net.parameters():
        p.grad = None
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    for order in ("second", "first"):
        grads, loss = architecture_gradients(
            net, train_batch=train, arch_batch=arch, loss_fn=loss_fn, weight_optimizer=optimizer, order=order, seed=7
        )
        assert math.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
        assert [g.shape for g in grads] == [p.shape for p in net.arch_parameters()]
        for key, value in net.state_dict().items():
            assert torch.equal(value, before[key]), f"{order}-order step changed {key}"
    assert any("running_mean" in key for key in before)
    assert all(p.grad is None for p in net.parameters())
    assert torch.equal(torch.get_rng_state(), rng)  # the passes ran on a forked RNG
    again, _ = architecture_gradients(
        net, train_batch=train, arch_batch=arch, loss_fn=loss_fn, weight_optimizer=optimizer, order="first", seed=7
    )
    assert all(torch.equal(a, b) for a, b in zip(grads, again))


# ------------------------------------------------------------------ the loop


def test_reports_every_epoch_and_result():
    recorder = Recorder()
    result = run_search(tiny_data(), settings=settings(), device=CPU, reporter=recorder)
    assert isinstance(result, SearchResult)
    assert [step for step, _ in recorder.calls] == [1, 2]
    for step, metrics in recorder.calls:
        assert REQUIRED_KEYS <= metrics.keys()
        assert metrics["phase"] == "search" and metrics["epoch"] == step
        assert Genotype.from_json(metrics["genotype"]).hash == metrics["genotype_hash"]
    assert recorder.calls[1][1]["lr"] < recorder.calls[0][1]["lr"] == 0.025  # cosine schedule
    assert result.epochs_run == 2 and result.stopped_early is None
    assert without_timings(result.history) == without_timings([m for _, m in recorder.calls])
    assert result.genotype.hash == recorder.calls[-1][1]["genotype_hash"]
    assert result.final_valid["ua"] == recorder.calls[-1][1]["valid_ua"]
    assert len(result.final_valid["confusion"]) == 3
    assert result.supernet_params > 0 and result.seconds > 0


def test_same_seed_same_search_and_other_seed_differs():
    data = tiny_data()
    a = run_search(data, settings=settings(), device=CPU)
    b = run_search(data, settings=settings(), device=CPU)
    assert a.genotype == b.genotype
    assert without_timings(a.history) == without_timings(b.history)
    c = run_search(data, settings=settings(seed=1, epochs=1), device=CPU)
    assert without_timings(c.history) != without_timings(a.history[:1])


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    # Second order, balanced sampling and dropout: every random stream and optimiser state matters.
    data = tiny_data()
    config = settings(order="second", imbalance="balanced-sampling")
    whole = run_search(data, settings=config, device=CPU, checkpoint_path=tmp_path / "whole.pt")

    path = tmp_path / "resumed.pt"
    with pytest.raises(StopSearch):
        run_search(data, settings=config, device=CPU, reporter=Recorder(stop_at=1), checkpoint_path=path)
    assert load_checkpoint(path)["epoch"] == 1
    recorder = Recorder()
    resumed = run_search(data, settings=config, device=CPU, reporter=recorder, checkpoint_path=path)

    assert [step for step, _ in recorder.calls] == [2]
    assert resumed.genotype == whole.genotype and resumed.epochs_run == 2
    assert without_timings(resumed.history) == without_timings(whole.history)
    assert resumed.final_valid == whole.final_valid
    final_whole, final_resumed = load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(path)
    for key, value in final_whole["model"].items():
        assert torch.equal(value, final_resumed["model"][key]), key
    # A finished search resumes to its result without training again.
    silent = Recorder()
    again = run_search(data, settings=config, device=CPU, reporter=silent, checkpoint_path=path)
    assert again.genotype == whole.genotype and again.epochs_run == 2 and silent.calls == []
    assert without_timings(again.history) == without_timings(whole.history)


def test_raising_reporter_stops_the_run_after_writing_the_checkpoint(tmp_path):
    path = tmp_path / "search.pt"
    recorder = Recorder(stop_at=1)
    with pytest.raises(StopSearch, match="stop at 1"):
        run_search(
            tiny_data(),
            settings=settings(epochs=3, checkpoint_every=5),
            device=CPU,
            reporter=recorder,
            checkpoint_path=path,
        )
    assert len(recorder.calls) == 1
    state = load_checkpoint(path)
    assert state["kind"] == "search" and state["epoch"] == 1 and len(state["history"]) == 1
    assert state["settings"] == settings(epochs=3, checkpoint_every=5).model_dump()
    assert state["fold"] == 1 and state["classes"] == ["c0", "c1", "c2"]
    assert {"model", "weight_optimizer", "arch_optimizer", "scheduler", "rng", "seconds"} <= state.keys()


def test_alphas_learn_and_the_optimisers_partition_the_parameters(tmp_path):
    data, config = tiny_data(), settings(epochs=1)
    seed_everything(config.seed)
    initial = build_supernet(data, config)
    path = tmp_path / "search.pt"
    run_search(data, settings=config, device=CPU, checkpoint_path=path)
    state = load_checkpoint(path)
    n_arch, n_weights = len(list(initial.arch_parameters())), len(list(initial.weight_parameters()))
    assert [len(g["params"]) for g in state["arch_optimizer"]["param_groups"]] == [n_arch]
    assert [len(g["params"]) for g in state["weight_optimizer"]["param_groups"]] == [n_weights]
    for name, p in initial.named_arch_parameters():
        assert not torch.equal(state["model"][name], p.detach()), f"{name} did not move"
    # Weight steps alone (warm-up) never move the alphas, while the weights do move.
    run_search(data, settings=settings(epochs=1, warmup_epochs=1), device=CPU, checkpoint_path=tmp_path / "w.pt")
    warm = load_checkpoint(tmp_path / "w.pt")
    for name, p in initial.named_arch_parameters():
        assert torch.equal(warm["model"][name], p.detach())
    assert not torch.equal(warm["model"]["stem.0.weight"], initial.stem[0].weight.detach())
    assert warm["history"][0]["warmup"] is True and "arch_loss" not in warm["history"][0]


def collapsed_supernet(data, config):
    net = build_supernet(data, config)
    with torch.no_grad():
        net.alphas_normal.zero_()[:, config.primitives.index("skip_connect")] = 10.0
        net.alphas_reduce.zero_()[:, config.primitives.index("max_pool_3x3")] = 10.0
    return net


def test_collapse_to_parameter_free_ops_stops_the_search(monkeypatch):
    monkeypatch.setattr(search_module, "build_supernet", collapsed_supernet)
    frozen_alphas = ArchOptimizer(lr=1e-12, weight_decay=0.0)
    result = run_search(tiny_data(), settings=settings(epochs=3, alphas=frozen_alphas), device=CPU)
    assert result.epochs_run == 1 and len(result.history) == 1
    assert "parameter-free" in result.stopped_early and "skip_connect" in result.stopped_early
    assert result.history[0]["collapsed"] is True and result.history[0]["parameter_free_share"] == 1.0

    kept_going = run_search(
        tiny_data(),
        settings=settings(epochs=2, alphas=frozen_alphas, max_skip_normal=1, stop_on_parameter_free=False),
        device=CPU,
    )
    assert kept_going.epochs_run == 2 and kept_going.stopped_early is None
    assert [op for op, _ in kept_going.genotype.normal].count("skip_connect") <= 1  # the P-DARTS cap
    assert all(op in PARAMETER_FREE_OPS for op, _ in kept_going.genotype.reduce)


@pytest.mark.parametrize("arch_data", ["train-speakers", "valid", "train-split"])
def test_test_speakers_are_never_used(arch_data):
    data = tiny_data()
    poisoned = replace(
        data, test=Split(x=torch.full_like(data.test.x, float("nan")), y=data.test.y, utt_ids=data.test.utt_ids)
    )
    recorder = Recorder()
    result = run_search(poisoned, settings=settings(epochs=1, arch_data=arch_data), device=CPU, reporter=recorder)
    for _, metrics in recorder.calls:
        for key, value in metrics.items():
            if isinstance(value, float):
                assert math.isfinite(value), key
    assert all(math.isfinite(v) for k, v in result.final_valid.items() if k not in ("confusion", "absent_classes"))


def test_train_split_is_disjoint_stratified_and_reproducible():
    data = tiny_data(n_train=30)
    config = settings(arch_data="train-split", train_portion=0.6)
    weights, arch = split_for_arch_data(data, config)
    assert len(weights) == 18 and len(arch) == 12
    assert set(weights.utt_ids).isdisjoint(arch.utt_ids)
    assert set(weights.utt_ids) | set(arch.utt_ids) == set(data.train.utt_ids)
    assert torch.bincount(weights.y).tolist() == [6, 6, 6]
    assert split_for_arch_data(data, config)[0].utt_ids == weights.utt_ids
    assert (
        split_for_arch_data(data, settings(arch_data="train-split", train_portion=0.6, seed=3))[0].utt_ids
        != weights.utt_ids
    )
    assert split_for_arch_data(data, settings(arch_data="valid")) == (data.train, data.valid)


def test_by_default_alphas_learn_on_alpha_speakers_and_validation_trains_nothing():
    data = tiny_data()
    weights, alphas = split_for_arch_data(data, settings())
    assert weights.utt_ids == data.train.utt_ids[:12] and alphas.utt_ids == data.train.utt_ids[12:]
    # Other validation speakers change the reports, never the weights or the alphas.
    noise = torch.randn(data.valid.x.shape, generator=torch.Generator().manual_seed(9))
    other_valid = replace(data, valid=Split(x=noise, y=data.valid.y.flip(0), utt_ids=data.valid.utt_ids))
    first = run_search(data, settings=settings(epochs=2), device=CPU)
    second = run_search(other_valid, settings=settings(epochs=2), device=CPU)
    assert first.genotype == second.genotype
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]
    assert [h["arch_loss"] for h in first.history] == [h["arch_loss"] for h in second.history]
    assert [h["valid_loss"] for h in first.history] != [h["valid_loss"] for h in second.history]


def test_a_fold_without_alpha_speakers_is_refused_by_name():
    data = replace(tiny_data(), train_roles=("weights",) * 24)
    with pytest.raises(ValueError, match="fold 1 has no speaker in the search role .alphas."):
        run_search(data, settings=settings(), device=CPU)


def test_corrupt_checkpoint_and_mismatched_resume_are_refused(tmp_path):
    data = tiny_data()
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        run_search(data, settings=settings(), device=CPU, checkpoint_path=bad)

    path = tmp_path / "search.pt"
    run_search(data, settings=settings(epochs=1), device=CPU, checkpoint_path=path)
    with pytest.raises(ValueError, match=r"weights\.lr is 0\.025 there but 0\.05 now"):
        run_search(data, settings=settings(epochs=1, weights={"lr": 0.05}), device=CPU, checkpoint_path=path)
    with pytest.raises(ValueError, match="epochs is 1 there but 2 now"):
        run_search(data, settings=settings(epochs=2), device=CPU, checkpoint_path=path)
    with pytest.raises(ValueError, match="fold 1, but this is fold 2"):
        run_search(replace(data, fold=2), settings=settings(epochs=1), device=CPU, checkpoint_path=path)
    with pytest.raises(ValueError, match="classes"):
        run_search(
            replace(data, classes=("a", "b", "c")), settings=settings(epochs=1), device=CPU, checkpoint_path=path
        )


def test_empty_arch_data_is_refused():
    data = tiny_data()
    empty = Split(x=data.valid.x[:0], y=data.valid.y[:0], utt_ids=())
    with pytest.raises(ValueError, match="no utterances for the alphas"):
        run_search(replace(data, valid=empty), settings=settings(arch_data="valid"), device=CPU)


@pytest.mark.parametrize("mixed_precision", [True, False])
def test_mixed_precision_search_runs_weight_steps_and_measurements_in_bf16_only_when_enabled(
    monkeypatch, mixed_precision
):
    """bf16 autocast on weight steps and evaluation (for GPUs) runs on CPU with finite losses, and
    is in effect exactly when enabled (the architecture step stays in fp32 either way)."""
    seen = probe_conv_dtypes(monkeypatch, search_module, builder="build_supernet")
    result = run_search(tiny_data(), settings=settings(mixed_precision=mixed_precision), device=CPU)
    assert seen == expected_dtypes(mixed_precision)
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["valid_loss"]) for h in result.history)
    assert result.epochs_run == 2


def test_pc_darts_edge_normalisation_is_a_setting_whose_betas_train(tmp_path):
    """search.edge_normalization reaches the supernet (PC-DARTS' per-edge betas) and its betas
    learn like the alphas; off, the supernet has none."""
    data = tiny_data()
    plain = build_supernet(data, settings(epochs=1))
    assert not any("betas" in name for name, _ in plain.named_arch_parameters())
    config = settings(epochs=1, pc_k=2, edge_normalization=True)
    seed_everything(config.seed)
    initial = build_supernet(data, config)
    betas = {name: p.detach().clone() for name, p in initial.named_arch_parameters() if "betas" in name}
    assert set(betas) == {"betas_normal", "betas_reduce"}
    run_search(data, settings=config, device=CPU, checkpoint_path=tmp_path / "search.pt")
    state = load_checkpoint(tmp_path / "search.pt")
    assert all(not torch.equal(state["model"][name], value) for name, value in betas.items())


# ------------------------------------------------------------------ methods for small budgets (issue 27)


def test_search_method_settings_are_validated_by_name():
    assert settings().method == "darts" and settings().selection == "argmax" and settings().beta_decay == 0.0
    with pytest.raises(ValueError, match="selection='perturbation' needs method='darts'"):
        settings(method="random-ws", selection="perturbation")
    with pytest.raises(ValueError, match="beta_decay=0.5 needs method='darts'"):
        settings(method="random-ws", beta_decay=0.5)
    with pytest.raises(ValueError, match="pt_finetune_epochs=2 needs selection='perturbation'"):
        settings(pt_finetune_epochs=2)
    with pytest.raises(ValueError, match="random_ws_candidates"):
        settings(method="random-ws", random_ws_candidates=0)
    with pytest.raises(ValueError, match="beta_decay"):
        settings(beta_decay=-1.0)


@pytest.mark.usefixtures("one_torch_thread")
def test_random_ws_is_seeded_trains_no_alphas_and_returns_its_best_shared_weight_candidate(tmp_path):
    data = tiny_data()
    config = settings(method="random-ws", random_ws_candidates=6, primitives=("none", "skip_connect", "sep_conv_3x3"))
    seed_everything(config.seed)
    initial = build_supernet(data, config)
    result = run_search(data, settings=config, device=CPU, checkpoint_path=tmp_path / "rws.pt")
    state = load_checkpoint(tmp_path / "rws.pt")
    for name, p in initial.named_arch_parameters():
        assert torch.equal(state["model"][name], p.detach()), f"{name} moved"
    assert not torch.equal(state["model"]["stem.0.weight"], initial.stem[0].weight.detach())

    # The candidates are the seed's draw; the result is the one whose path scores best on the alpha speakers.
    candidates = sample_genotypes(config.seed, 6, primitives=config.primitives, nodes=2)
    net = build_supernet(data, config)
    net.load_state_dict(state["model"])
    _, alpha_speakers = split_for_arch_data(data, config)
    scores = score_genotypes_with_shared_weights(net, candidates, alpha_speakers, batch_size=8)
    last = result.history[-1]
    assert result.genotype == candidates[last["candidate_index"]]
    assert last["shared_weight_ua"] == scores[last["candidate_index"]] == max(scores)
    assert last["method"] == "random-ws" and last["selection"] == "argmax" and last["candidates"] == 6
    assert all("arch_loss" not in h and h["collapsed"] is False for h in result.history)

    again = run_search(data, settings=config, device=CPU)
    assert again.genotype == result.genotype and without_timings(again.history) == without_timings(result.history)
    other = run_search(data, settings=config.model_copy(update={"seed": 1}), device=CPU)
    assert without_timings(other.history) != without_timings(result.history)


@pytest.mark.usefixtures("one_torch_thread")
def test_random_ws_resumes_to_the_uninterrupted_result(tmp_path):
    data, config = tiny_data(), settings(method="random-ws", random_ws_candidates=4)
    whole = run_search(data, settings=config, device=CPU)
    path = tmp_path / "resumed.pt"
    with pytest.raises(StopSearch):
        run_search(data, settings=config, device=CPU, reporter=Recorder(stop_at=1), checkpoint_path=path)
    resumed = run_search(data, settings=config, device=CPU, checkpoint_path=path)
    assert resumed.genotype == whole.genotype
    assert without_timings(resumed.history) == without_timings(whole.history)


@pytest.mark.usefixtures("one_torch_thread")
def test_beta_decay_ramps_linearly_and_decays_the_alphas(tmp_path):
    data = tiny_data()
    run_search(data, settings=settings(), device=CPU, checkpoint_path=tmp_path / "plain.pt")
    decayed = run_search(data, settings=settings(beta_decay=4.0), device=CPU, checkpoint_path=tmp_path / "beta.pt")
    assert [h["beta_decay_weight"] for h in decayed.history] == [2.0, 4.0]  # beta_decay * epoch / epochs
    plain = load_checkpoint(tmp_path / "plain.pt")["model"]
    plain_loss = float(beta_decay_loss([plain["alphas_normal"], plain["alphas_reduce"]]))
    assert decayed.history[-1]["beta_decay_loss"] < plain_loss  # the regulariser pulls the log-sum-exp down


@pytest.mark.usefixtures("one_torch_thread")
def test_a_checkpoint_from_before_the_search_methods_resumes_under_their_defaults(tmp_path):
    data, path = tiny_data(), tmp_path / "old.pt"
    with pytest.raises(StopSearch):
        run_search(data, settings=settings(), device=CPU, reporter=Recorder(stop_at=1), checkpoint_path=path)
    state = load_checkpoint(path)
    for name in ("method", "selection", "pt_finetune_epochs", "beta_decay", "random_ws_candidates"):
        del state["settings"][name]
    save_checkpoint(state, path)
    with pytest.raises(ValueError, match="beta_decay is 0.0 there but 1.0 now"):  # what it ran with
        run_search(data, settings=settings(beta_decay=1.0), device=CPU, checkpoint_path=path)
    recorder = Recorder()
    assert run_search(data, settings=settings(), device=CPU, reporter=recorder, checkpoint_path=path).epochs_run == 2
    assert [step for step, _ in recorder.calls] == [2]


@pytest.mark.usefixtures("one_torch_thread")
def test_score_controls_records_the_final_supernets_scores_of_the_default_draw_and_changes_nothing_else(tmp_path):
    from search_space.sampling import CONTROL_SEED

    data, config = tiny_data(), settings(primitives=("none", "skip_connect", "sep_conv_3x3"))
    plain = run_search(data, settings=config, device=CPU)
    reports = Recorder()
    scored = run_search(
        data,
        settings=config.model_copy(update={"score_controls": 4}),
        device=CPU,
        reporter=reports,
        checkpoint_path=tmp_path / "s.pt",
    )
    # Scoring the controls after the last epoch leaves the search itself as it was.
    assert scored.genotype == plain.genotype
    last = scored.history[-1]
    assert without_timings(scored.history[:-1]) == without_timings(plain.history[:-1])
    assert {k: v for k, v in without_timings([last])[0].items() if k != "control_scores"} == without_timings(
        [plain.history[-1]]
    )[0]
    assert all("control_scores" not in h for h in scored.history[:-1])
    assert all("control_scores" not in metrics for _, metrics in reports.calls)  # kept out of Tune's metrics
    # The scores are those of cross-eval's first 4 random controls through the final supernet, on the alpha speakers.
    controls = sample_genotypes(CONTROL_SEED, 4, primitives=config.primitives, nodes=2)
    net = build_supernet(data, config)
    net.load_state_dict(load_checkpoint(tmp_path / "s.pt")["model"])
    _, alpha_speakers = split_for_arch_data(data, config)
    expected = score_genotypes_with_shared_weights(net, controls, alpha_speakers, batch_size=8)
    assert last["control_scores"] == dict(zip((g.hash for g in controls), expected))


def test_score_controls_is_refused_where_it_cannot_work():
    with pytest.raises(ValueError, match="the search space holds 9 genotypes"):
        settings(score_controls=10, primitives=("none", "skip_connect"))  # 1 op: 3 x 3 input pairs per cell pair
    with pytest.raises(ValueError, match="score_controls=2 does not yet work with sequence.enabled"):
        settings(score_controls=2, sequence={"enabled": True})
