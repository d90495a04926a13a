"""DARTS search of one fold: bi-level optimisation of a SuperNet, then a derived Genotype.

Network weights learn on the weight data with SGD (cosine-annealed lr, gradient clipping);
architecture weights (alphas) learn on the arch data with Adam. Every search step is, in DARTS'
order, one alpha step on an arch batch followed by one weight step on a train batch; an epoch
is one pass over the weight data, and the arch data is cycled (re-shuffled on every pass, and
afresh at every epoch) when it has fewer batches. During the first ``warmup_epochs`` only the
weights learn.

Where the data comes from (``settings.arch_data``):

* ``"train-speakers"`` (default): the fold's training speakers, split by speaker into weight
  speakers and alpha speakers (the fold table's ``search_role``). The validation speakers are
  then used only for the per-epoch report, so they stay unbiased judges of searched cells and
  of the hand-made baseline alike.
* ``"valid"`` (DARTS, the paper): weights on the fold's train split, alphas on its valid split.
  The validation speakers then both train the alphas and choose the evaluation epoch and the
  trials, which favours searched cells over the baseline: kept as an option, not the default.
* ``"train-split"``: the train utterances are split once, at random but reproducibly (seeded by
  ``settings.seed``, stratified by class), into a ``train_portion`` share for the weights and
  the rest for the alphas. The valid speakers are then used only for the per-epoch report.

The fold's test split is never touched here.

The architecture gradient (first order, or DARTS' second order with a finite-difference
Hessian-vector term) is :func:`trainers.architect.architecture_gradients`.

Class imbalance (``settings.imbalance``) applies to both levels: the class-weighted loss of
:func:`trainers.training.make_loss` for ``weighted-loss``, class-balanced batches (drawn with
replacement) for both the weight and the arch data for ``balanced-sampling``.

Methods for small budgets (docs/search.md), each a setting:

* ``method="random-ws"`` (Li & Talwalkar, UAI 2019): no alpha steps; every weight batch trains one
  path drawn uniformly from the space (``search_space.sample_genotype``, from the search's own
  generator), and after every epoch ``random_ws_candidates`` random genotypes (drawn once from
  ``settings.seed``) are ranked by their paths' UA on the alpha speakers with the shared weights
  (``trainers.shared_weights``); the best is the epoch's genotype, and its path's metrics on the
  valid speakers are the epoch's report.
* ``selection="perturbation"`` (DARTS-PT, ``trainers.perturbation``): the last epoch's genotype
  is chosen by masking operations and edges of the searched supernet and measuring it on the
  alpha speakers, instead of by the argmax of the alphas (recorded as ``argmax_genotype_hash``).
* ``beta_decay > 0`` (beta-DARTS): the architecture loss gains ``lambda_e * L_beta``, the mean
  log-sum-exp of the alphas, with ``lambda_e = beta_decay * e / epochs`` in epoch e (the linear
  ramp of the paper's code).

Every epoch's metrics name the ``method`` and ``selection`` that ran.

After every epoch the supernet is measured on the valid speakers, the genotype derived (with
the P-DARTS skip cap), a checkpoint written when due and ``reporter(epoch, metrics)`` called;
a reporter may raise to stop the search (the epoch's checkpoint is then on disk). With
``stop_on_parameter_free`` the search stops once (after warm-up) every edge's strongest
operation is parameter-free: the supernet has collapsed, and more epochs would not undo it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from search_space import PARAMETER_FREE_OPS, Genotype, SuperNet, sample_genotype, sample_genotypes
from search_space.sampling import CONTROL_SEED
from trainers.architect import architecture_gradients, beta_decay_loss
from trainers.augment import spec_augment
from trainers.checkpoint import check_resumable, load_checkpoint, save_checkpoint, save_then_report
from trainers.fold_data import FoldData, Split, iterate_batches
from trainers.gpu_memory import should_recompute
from trainers.perturbation import select_by_perturbation
from trainers.reporting import Reporter, ignore_reports
from trainers.reproducibility import capture_rng_state, restore_rng_state, seed_everything
from trainers.settings import SearchSettings, with_defaults_for_missing
from trainers.shared_weights import score_genotypes_with_shared_weights, shared_weight_metrics, with_mixing
from trainers.training import evaluate_split, make_loss, sgd_with_cosine, weight_step

__all__ = [
    "SearchResult",
    "build_supernet",
    "resolve_recompute",
    "run_search",
    "score_genotypes_with_shared_weights",
    "split_for_arch_data",
]


@dataclass(frozen=True)
class SearchResult:
    genotype: Genotype
    epochs_run: int
    stopped_early: str | None  # why the search stopped before settings.epochs, or None
    history: list[dict]  # the metrics reported after each epoch
    seconds: float  # search wall time, summed over resumed runs
    supernet_params: int  # network weights of the supernet (alphas not counted)
    final_valid: dict  # evaluate_split of the final supernet on the valid speakers


# ---------------------------------------------------------------------------- building blocks


def build_supernet(data: FoldData, settings: SearchSettings) -> SuperNet:
    """The supernet of ``settings`` for ``data``'s input channels and classes (on the CPU);
    ``settings.recompute`` None recomputes (``run_search`` resolves it first: ``resolve_recompute``)."""
    shape = settings.shape
    return SuperNet(
        layers=shape.layers,
        nodes=shape.nodes,
        init_channels=shape.init_channels,
        n_classes=len(data.classes),
        primitives=settings.primitives,
        lstm_hidden=shape.lstm_hidden,
        lstm_layers=shape.lstm_layers,
        dropout=shape.dropout,
        pc_k=settings.pc_k,
        edge_normalization=settings.edge_normalization,
        in_channels=data.input_shape[0],
        checkpoint=settings.recompute is not False,
        head=shape.head,
        sequence=settings.sequence.for_supernet(lstm_hidden=shape.lstm_hidden),
        frontend=shape.frontend(data.input_shape, layered=data.layered),
    )


def resolve_recompute(data: FoldData, settings: SearchSettings, device: torch.device) -> bool:
    """``settings.recompute``, or where it is None the memory rule of ``should_recompute``."""
    if settings.recompute is not None:
        return settings.recompute
    shape = settings.shape
    input_shape = tuple(data.input_shape)
    if data.layered:  # the cells read the frontend's (1, ssl_projection, T) map
        input_shape = (1, shape.ssl_projection, input_shape[-1])
    return should_recompute(
        device,
        batch_size=settings.batch_size,
        layers=shape.layers,
        nodes=shape.nodes,
        init_channels=shape.init_channels,
        primitives=len(settings.primitives),
        input_shape=input_shape,
    )


def split_for_arch_data(data: FoldData, settings: SearchSettings) -> tuple[Split, Split]:
    """``(weight_data, arch_data)`` for ``settings.arch_data`` (see the module docstring).

    ``train-speakers`` follows the fold table's search roles (split by speaker, seeded, recorded
    with the fold). ``train-split`` is stratified by class and seeded by ``settings.seed`` alone,
    so a resumed search gets the same split.
    """
    if settings.arch_data == "train-speakers":
        return data.search_splits()
    if settings.arch_data == "valid":
        return data.train, data.valid
    generator = torch.Generator().manual_seed(settings.seed)
    keep, held = [], []
    for k in range(len(data.classes)):
        members = torch.nonzero(data.train.y == k).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_keep = round(settings.train_portion * len(members))
        keep.append(members[:n_keep])
        held.append(members[n_keep:])
    keep_index, held_index = torch.cat(keep).sort().values, torch.cat(held).sort().values
    if len(keep_index) == 0 or len(held_index) == 0:
        raise ValueError(
            f"arch_data='train-split' with train_portion={settings.train_portion} leaves "
            f"{len(keep_index)} utterance(s) for the weights and {len(held_index)} for the alphas "
            f"out of {len(data.train)}; both need at least one."
        )
    return data.train.subset(keep_index), data.train.subset(held_index)


class _Cycle:
    """Endless batches over ``split``: a new (shuffled or balanced) pass whenever one ends."""

    def __init__(self, split: Split, *, batch_size: int, balanced: bool, generator: torch.Generator) -> None:
        self._make = lambda: iterate_batches(
            split, batch_size=batch_size, shuffle=True, generator=generator, balanced=balanced
        )
        self._it = self._make()

    def __iter__(self) -> _Cycle:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        try:
            return next(self._it)
        except StopIteration:
            self._it = self._make()
            return next(self._it)


# ---------------------------------------------------------------------------- the search loop


def _is_collapsed(dominant: dict[str, list[str]]) -> bool:
    return all(op in PARAMETER_FREE_OPS for ops in dominant.values() for op in ops)


def _best_candidate(
    model: SuperNet,
    candidates: list[Genotype],
    *,
    arch_data: Split,
    valid: Split,
    settings: SearchSettings,
    loss_fn: torch.nn.Module,
    device: torch.device,
) -> tuple[Genotype, dict, dict]:
    """random-ws: the candidate whose path has the best UA on the alpha speakers (ties: lower loss,
    then the earlier draw), its path's metrics on the valid speakers (reported, choosing nothing),
    and what to record."""
    measure = dict(batch_size=settings.batch_size, device=device, loss_fn=loss_fn, autocast=settings.mixed_precision)
    scores = shared_weight_metrics(model, [model.path_mixing(g) for g in candidates], arch_data, **measure)
    best = min(range(len(candidates)), key=lambda i: (-scores[i]["ua"], scores[i]["loss"], i))
    (valid_metrics,) = shared_weight_metrics(model, [model.path_mixing(candidates[best])], valid, **measure)
    record = {"candidates": len(candidates), "candidate_index": best, "shared_weight_ua": scores[best]["ua"]}
    return candidates[best], valid_metrics, record


def run_search(
    data: FoldData,
    *,
    settings: SearchSettings,
    device: torch.device,
    reporter: Reporter = ignore_reports,
    checkpoint_path: Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> SearchResult:
    """Search a cell on ``data`` (train/valid only) and return the derived genotype.

    Resumes from ``checkpoint_path`` when it holds a checkpoint of the same settings, fold and
    classes (``CheckpointError``, a ``ValueError``, naming what differs otherwise, or if unreadable);
    a resumed search ends exactly as an uninterrupted one would (on CPU). ``provenance`` (what
    ``data`` was made from: normalisation, feature preset, utterance hashes; see
    ``trainers.run_fold``) is recorded as the checkpoint's ``data`` and must match too, unless
    the checkpoint predates that record.

    ``data`` must be normalised (``FoldData.normalized``; ``run_fold`` does it): raw features are
    refused with a ValueError saying how.
    """
    data.require_normalization()
    device = torch.device(device)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    generator = seed_everything(settings.seed)
    # The weights stay in the default layout (channels_last *weights* crashed torch 2.13's
    # multi-threaded CPU backward); the supernet keeps its activations channels_last itself
    # (SuperNet(channels_last=True), search_space.fast_conv).
    recompute = resolve_recompute(data, settings, device)
    model = build_supernet(data, settings.model_copy(update={"recompute": recompute})).to(device)
    weights, arch = list(model.weight_parameters()), list(model.arch_parameters())
    w_settings, a_settings = settings.weights, settings.alphas
    weight_optimizer, scheduler = sgd_with_cosine(weights, settings=w_settings, epochs=settings.epochs)
    arch_optimizer = torch.optim.Adam(
        arch, lr=a_settings.lr, betas=(a_settings.beta1, a_settings.beta2), weight_decay=a_settings.weight_decay
    )
    loss_fn = make_loss(data.train.y, n_classes=len(data.classes), imbalance=settings.imbalance, device=device)
    weight_data, arch_data = split_for_arch_data(data, settings)
    for name, split in (("weights", weight_data), ("alphas", arch_data)):
        if len(split) == 0:
            raise ValueError(
                f"fold {data.fold} has no utterances for the {name} "
                f"(arch_data={settings.arch_data!r}); check the fold table."
            )
    balanced = settings.imbalance == "balanced-sampling"
    n_classes = len(data.classes)
    random_ws = settings.method == "random-ws"
    nodes = settings.shape.nodes
    # random-ws' candidates: drawn from the seed alone, so a resumed search ranks the same ones
    candidates = (
        sample_genotypes(settings.seed, settings.random_ws_candidates, primitives=settings.primitives, nodes=nodes)
        if random_ws
        else []
    )

    start_epoch, history, elapsed, stopped_early = 0, [], 0.0, None
    last_valid: dict | None = None
    identity = {
        "kind": "search",
        "settings": settings.model_dump(),
        "fold": data.fold,
        "classes": list(data.classes),
        **({"data": dict(provenance)} if provenance is not None else {}),
    }
    state = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    if state is not None:
        if isinstance(state.get("settings"), Mapping):  # settings added since it was written: their defaults
            state = {**state, "settings": with_defaults_for_missing(state["settings"], SearchSettings)}
        check_resumable(state, identity=identity, path=checkpoint_path, optional=("data",))
        model.load_state_dict(state["model"])
        weight_optimizer.load_state_dict(state["weight_optimizer"])
        arch_optimizer.load_state_dict(state["arch_optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"], generator, device=device)
        start_epoch, history = int(state["epoch"]), list(state["history"])
        elapsed, stopped_early = float(state["seconds"]), state["stopped_early"]
        last_valid = state["last_valid"]

    def save() -> None:
        save_checkpoint(
            {
                **identity,
                "epoch": epoch,
                "model": model.state_dict(),
                "weight_optimizer": weight_optimizer.state_dict(),
                "arch_optimizer": arch_optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": capture_rng_state(generator, device=device),
                "history": history,
                "seconds": elapsed,
                "stopped_early": stopped_early,
                "last_valid": last_valid,
            },
            checkpoint_path,
        )

    def last_epoch() -> bool:
        return epoch == settings.epochs or stopped_early is not None

    epoch = start_epoch
    while epoch < settings.epochs and stopped_early is None:
        epoch += 1
        started = time.perf_counter()
        lr = float(weight_optimizer.param_groups[0]["lr"])
        search_alphas = not random_ws and epoch > settings.warmup_epochs
        beta_decay = settings.beta_decay * epoch / settings.epochs  # beta-DARTS' linear ramp
        model.train()
        train_batches = iterate_batches(
            weight_data, batch_size=settings.batch_size, shuffle=True, generator=generator, balanced=balanced
        )
        arch_batches = _Cycle(arch_data, batch_size=settings.batch_size, balanced=balanced, generator=generator)
        train_loss = arch_loss = 0.0
        n_train = n_arch = 0
        for x, y, lengths in train_batches:
            # Weight batches are masked (SpecAugment), before the unrolled step that anticipates them.
            x, y = spec_augment(x, settings.spec_augment, generator=generator).to(device), y.to(device)  # (B, 1, F, T)
            if search_alphas:
                xa, ya, la = next(arch_batches)
                xa, ya = xa.to(device), ya.to(device)  # (B', 1, F, T), (B',)
                seed = int(torch.randint(0, 2**62, ()))  # one draw per step from the global RNG
                grads, loss = architecture_gradients(
                    model,
                    train_batch=(x, y, lengths),
                    arch_batch=(xa, ya, la),
                    loss_fn=loss_fn,
                    weight_optimizer=weight_optimizer,
                    order=settings.order,
                    seed=seed,
                    beta_decay=beta_decay,
                )
                arch_optimizer.zero_grad(set_to_none=True)
                for p, g in zip(arch, grads):
                    p.grad = g
                arch_optimizer.step()
                arch_optimizer.zero_grad(set_to_none=True)
                arch_loss += loss * len(ya)
                n_arch += len(ya)
                del grads
            net: torch.nn.Module = model
            if random_ws:  # one uniformly sampled path per batch (Li & Talwalkar)
                path = sample_genotype(generator, primitives=settings.primitives, nodes=nodes)
                net = with_mixing(model, model.path_mixing(path))
            loss = weight_step(
                net,
                x,
                y,
                loss_fn=loss_fn,
                optimizer=weight_optimizer,
                parameters=weights,
                grad_clip=w_settings.grad_clip,
                lengths=lengths,
                autocast=settings.mixed_precision,
            )
            for p in arch:  # the weight step's backward also reaches the alphas: drop that
                p.grad = None
            train_loss += loss * len(y)
            n_train += len(y)
        scheduler.step()

        extra: dict[str, Any] = {}
        if random_ws:
            genotype, last_valid, extra = _best_candidate(
                model,
                candidates,
                arch_data=arch_data,
                valid=data.valid,
                settings=settings,
                loss_fn=loss_fn,
                device=device,
            )
            ops = [op for op, _ in genotype.normal + genotype.reduce]
            n_edges, parameter_free, collapsed = len(ops), sum(op in PARAMETER_FREE_OPS for op in ops), False
        else:
            last_valid = evaluate_split(
                model,
                data.valid,
                n_classes=n_classes,
                batch_size=settings.batch_size,
                device=device,
                loss_fn=loss_fn,
                autocast=settings.mixed_precision,
            )
            genotype = model.genotype(max_skip_normal=settings.max_skip_normal)
            dominant = model.dominant_ops()
            n_edges = sum(len(ops) for ops in dominant.values())
            parameter_free = sum(op in PARAMETER_FREE_OPS for ops in dominant.values() for op in ops)
            collapsed = search_alphas and _is_collapsed(dominant)
            if collapsed and settings.stop_on_parameter_free and epoch < settings.epochs:
                summary = "; ".join(f"{kind}: {', '.join(sorted(set(ops)))}" for kind, ops in dominant.items())
                stopped_early = (
                    f"collapsed after epoch {epoch}: the strongest operation is parameter-free on every edge "
                    f"({summary})"
                )
            if settings.beta_decay > 0:
                with torch.no_grad():
                    regulariser = beta_decay_loss([model.alphas_normal, model.alphas_reduce])
                extra = {"beta_decay_weight": beta_decay, "beta_decay_loss": float(regulariser)}
            if settings.selection == "perturbation" and last_epoch():  # DARTS-PT decides the final genotype
                argmax_hash = genotype.hash
                genotype, record = select_by_perturbation(
                    model,
                    weight_data=weight_data,
                    arch_data=arch_data,
                    settings=settings,
                    loss_fn=loss_fn,
                    device=device,
                    generator=generator,
                )
                extra.update(record, argmax_genotype_hash=argmax_hash)
        if settings.score_controls and last_epoch():
            # The random controls cross-eval trains (the default draw), ranked by the final supernet
            # on the alpha speakers: what the report compares with their stand-alone validation UA.
            controls = sample_genotypes(
                CONTROL_SEED, settings.score_controls, primitives=settings.primitives, nodes=nodes
            )
            scores = score_genotypes_with_shared_weights(
                model, controls, arch_data, batch_size=settings.batch_size, autocast=settings.mixed_precision
            )
            extra["control_scores"] = {genotype.hash: score for genotype, score in zip(controls, scores)}
        seconds = time.perf_counter() - started
        elapsed += seconds
        metrics = {
            "phase": "search",
            "epoch": epoch,
            "fold": data.fold,
            "method": settings.method,
            "selection": settings.selection,
            "train_loss": train_loss / max(n_train, 1),
            **({"arch_loss": arch_loss / n_arch} if n_arch else {}),
            "valid_ua": last_valid["ua"],
            "valid_wa": last_valid["wa"],
            "valid_macro_f1": last_valid["macro_f1"],
            "valid_loss": last_valid["loss"],
            "genotype_hash": genotype.hash,
            "genotype": genotype.to_json(),
            "alpha_entropy": model.alpha_entropy(),
            "parameter_free_share": parameter_free / n_edges,
            "collapsed": collapsed,
            "warmup": epoch <= settings.warmup_epochs,
            "lr": lr,
            "seconds": seconds,
            "elapsed_seconds": elapsed,
            **extra,
        }
        history.append(metrics)
        due = epoch % settings.checkpoint_every == 0 or epoch == settings.epochs or stopped_early is not None
        reported = {key: value for key, value in metrics.items() if key != "control_scores"}  # kept in the history
        save_then_report(
            epoch, reported, reporter=reporter, save=save if checkpoint_path is not None else None, due=due
        )

    return SearchResult(
        genotype=Genotype.from_json(history[-1]["genotype"]),  # the last epoch's, whichever rule made it
        epochs_run=epoch,
        stopped_early=stopped_early,
        history=history,
        seconds=elapsed,
        supernet_params=sum(p.numel() for p in weights),
        final_valid=dict(last_valid),
    )
