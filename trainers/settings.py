"""Typed settings of one fold's search and evaluation, validated once where they enter.

Defaults follow the paper and DARTS: weights SGD lr 0.025 cosine-annealed to 0.001, momentum
0.9, weight decay 3e-4, gradient clip 5; alphas Adam lr 3e-4, betas (0.5, 0.999), weight decay
1e-3; 50 epochs; batch 32. Every bound is checked here (a NaN or negative learning rate is an
error naming the key), so trainers can trust what they get. The orchestrator's experiment
config builds these objects; ``model_dump()`` is what checkpoints and results store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search_space import (
    PRIMITIVES,
    SEQUENCE_OPS,
    HeadOptions,
    LayerMixOptions,
    validate_primitives,
    validate_sequence_ops,
)
from search_space.cells import search_depth_problem
from search_space.head import Pooling, SequenceInput
from search_space.sampling import genotype_space_size
from trainers.normalization import Normalization


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ModelShape(_Settings):
    """Sizes shared by the supernet and the discrete network built from its genotype (the
    hand-made baseline included), and the recurrent head's options (search_space.head): the
    genotype does not encode the head, these settings do."""

    layers: int = Field(4, ge=1, description="cells; reduction cells sit at 1/3 and 2/3 depth")
    nodes: int = Field(4, ge=1, description="intermediate nodes per cell (supernet only)")
    init_channels: int = Field(8, ge=1)
    lstm_hidden: int = Field(128, ge=1)
    lstm_layers: int = Field(1, ge=1)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    sequence_input: SequenceInput = Field(
        "mean-frequency",
        description="what the LSTM reads per time step: the CNN output averaged over frequency (C features) "
        "or frequency-channels (frequency pooled to frequency_bins bands, flattened with the channels: C x K)",
    )
    frequency_bins: int = Field(
        4, ge=1, le=64, description="with sequence_input frequency-channels: frequency bands K kept per step"
    )
    sequence_projection: int = Field(
        0,
        ge=0,
        description="with sequence_input frequency-channels: a linear map of the C x K features to this many "
        "per step before the LSTM (0: none)",
    )
    pooling: Pooling = Field(
        "mean",
        description="how a clip's LSTM outputs are pooled over its valid steps: mean, or stats (mean and "
        "standard deviation, concatenated)",
    )
    ssl_projection: int = Field(
        64,
        ge=1,
        description="with SSL features (stacked encoder layers): the width the learned weighted sum of the "
        "layers is projected to per frame, i.e. the frequency axis F of the (1, F, T) map the CNN reads",
    )

    @property
    def head(self) -> HeadOptions:
        """The recurrent head's options, as the networks take them."""
        return HeadOptions(
            sequence_input=self.sequence_input,
            frequency_bins=self.frequency_bins,
            sequence_projection=self.sequence_projection,
            pooling=self.pooling,
        )

    def frontend(self, input_shape: tuple[int, ...], *, layered: bool) -> LayerMixOptions | None:
        """The networks' input stage for features of ``input_shape`` ``(C, F, T)``: for ``layered``
        features (SSL encoder layers, ``(L, D, T)``) a weighted sum and a projection to
        ``ssl_projection``; None for spectrograms."""
        if not layered:
            return None
        return LayerMixOptions(layers=int(input_shape[0]), dim=int(input_shape[1]), width=self.ssl_projection)


class WeightOptimizer(_Settings):
    lr: float = Field(0.025, gt=0)
    lr_min: float = Field(0.001, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _lr_min_below_lr(self) -> WeightOptimizer:
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        return self


class ArchOptimizer(_Settings):
    lr: float = Field(3e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    weight_decay: float = Field(1e-3, ge=0)


class SpecAugment(_Settings):
    """Time and frequency masking (SpecAugment) of the batches that train weights; never applied
    to alpha steps, validation or test. Masked cells are set to 0, the mean after normalisation."""

    freq_masks: int = Field(0, ge=0, description="frequency masks per sample (0: off)")
    freq_width: float = Field(0.15, ge=0, le=1, description="largest frequency mask, as a share of the bins")
    time_masks: int = Field(0, ge=0, description="time masks per sample (0: off)")
    time_width: float = Field(0.1, ge=0, le=1, description="largest time mask, as a share of the frames")

    @property
    def enabled(self) -> bool:
        return self.freq_masks > 0 or self.time_masks > 0


class SequenceSearch(_Settings):
    """The searched sequence stage (search_space/sequence_cell.py). Off by default: the fixed LSTM,
    so existing configs and genotypes mean what they meant. On: the supernet's head runs a search
    sequence cell of ``nodes`` nodes over ``ops`` at width ``hidden`` (None: ``shape.lstm_hidden``),
    with its own alphas, and the derived genotype gets a ``sequence`` part (built at the
    evaluation's ``lstm_hidden``)."""

    enabled: bool = False
    ops: tuple[str, ...] = SEQUENCE_OPS
    nodes: int = Field(2, ge=1, description="intermediate nodes of the sequence cell")
    hidden: int | None = Field(None, ge=1, description="width of the sequence cell (None: shape.lstm_hidden)")

    @model_validator(mode="after")
    def _known_ops(self) -> SequenceSearch:
        validate_sequence_ops(self.ops)
        if "bilstm" in self.ops and self.hidden is not None and self.hidden % 2 != 0:
            raise ValueError(
                f"hidden must be even with bilstm (it splits hidden between directions), but got {self.hidden}"
            )
        return self

    def for_supernet(self, *, lstm_hidden: int) -> dict[str, Any] | None:
        """What :class:`search_space.SuperNet` takes as ``sequence`` (None when off)."""
        if not self.enabled:
            return None
        return {"ops": list(self.ops), "nodes": self.nodes, "hidden": self.hidden or lstm_hidden}


Imbalance = Literal["weighted-loss", "balanced-sampling", "none"]
SearchMethod = Literal["darts", "random-ws"]
Selection = Literal["argmax", "perturbation"]


class SearchSettings(_Settings):
    """DARTS bi-level search of one fold."""

    shape: ModelShape = ModelShape()
    primitives: tuple[str, ...] = PRIMITIVES
    pc_k: int = Field(1, ge=1, description="PC-DARTS partial channels: 1/K of the channels are searched")
    edge_normalization: bool = Field(
        False,
        description="PC-DARTS edge normalisation: per-edge betas weigh each node's inputs (in the search and in "
        "the derivation), steadying the choice that partial channels make noisy",
    )
    order: Literal["first", "second"] = "first"
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    weights: WeightOptimizer = WeightOptimizer()
    alphas: ArchOptimizer = ArchOptimizer()
    arch_data: Literal["train-speakers", "valid", "train-split"] = Field(
        "train-speakers",
        description="alphas learn on the fold's alpha speakers (training speakers split by speaker), on its "
        "validation speakers (DARTS; biases validation towards searched cells), or on a random share of train",
    )
    train_portion: float = Field(0.5, gt=0, lt=1, description="with arch_data=train-split: share kept for weights")
    warmup_epochs: int = Field(0, ge=0, description="epochs of weight training before alphas start moving")
    max_skip_normal: int | None = Field(2, ge=0, description="P-DARTS cap on skip_connect in the derived normal cell")
    stop_on_parameter_free: bool = Field(
        True, description="stop early when the dominant op is parameter-free on every edge"
    )
    imbalance: Imbalance = "weighted-loss"
    spec_augment: SpecAugment = SpecAugment()
    method: SearchMethod = Field(
        "darts",
        description="darts: bi-level DARTS; random-ws: random search with weight sharing (Li & Talwalkar 2019), "
        "the supernet trained on uniformly sampled paths, then random_ws_candidates random genotypes ranked "
        "by their shared-weight UA on the alpha speakers (docs/search.md)",
    )
    selection: Selection = Field(
        "argmax",
        description="how a darts search derives its genotype: argmax of the alphas (DARTS), or perturbation "
        "(DARTS-PT, Wang et al. 2021): per edge the op whose removal costs the most alpha-speaker UA, then per "
        "node the two edges whose removal costs most",
    )
    pt_finetune_epochs: int = Field(
        0,
        ge=0,
        description="with selection=perturbation: epochs of weight training between two decisions (DARTS-PT: 5)",
    )
    beta_decay: float = Field(
        0.0,
        ge=0,
        description="beta-DARTS regularisation (Ye et al. 2022): weight of the mean log-sum-exp of the alphas in "
        "the architecture loss, ramped linearly to this value over the epochs (0: off)",
    )
    sequence: SequenceSearch = Field(
        SequenceSearch(), description="search the sequence stage after the CNN cells too (off: the fixed LSTM)"
    )
    random_ws_candidates: int = Field(
        16, ge=1, description="with method=random-ws: random genotypes ranked with the shared weights"
    )
    score_controls: int = Field(
        0,
        ge=0,
        le=256,
        description="at the end of the search, score the first K random controls of the default draw (those "
        "`sernas cross-eval --random K` trains) by their path UA on the alpha speakers through the supernet's "
        "shared weights, so the report can say how well the supernet ranks them (Kendall tau; 0: off)",
    )
    seed: int = 0
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    mixed_precision: bool = Field(
        False,
        description="bf16 autocast for weight steps and evaluation; the "
        "architecture step stays fp32 (its finite differences need it)",
    )
    recompute: bool | None = Field(
        None,
        description="recompute the supernet's edge activations in the backward pass (3-4x less memory, "
        "~30 % slower on a GPU); None: on the CPU, and on CUDA unless twice the estimated peak fits the "
        "trial's memory (trainers.gpu_memory.should_recompute)",
    )

    @model_validator(mode="after")
    def _known_primitives(self) -> SearchSettings:
        validate_primitives(self.primitives)
        return self

    @model_validator(mode="after")
    def _method_and_its_options(self) -> SearchSettings:
        # settings that would silently do nothing are refused, naming what they need
        if self.method == "random-ws":
            if self.selection != "argmax":
                raise ValueError(
                    f"selection={self.selection!r} needs method='darts': random-ws chooses among random genotypes "
                    "by their shared-weight UA, it has no alphas to select from"
                )
            if self.beta_decay > 0:
                raise ValueError(f"beta_decay={self.beta_decay} needs method='darts': random-ws trains no alphas")
        if self.sequence.enabled and (self.method != "darts" or self.selection != "argmax"):
            raise ValueError(
                f"sequence.enabled needs method='darts' and selection='argmax' (random-ws and perturbation do not "
                f"yet decide a sequence cell), but got method={self.method!r}, selection={self.selection!r}"
            )
        if (
            self.sequence.enabled
            and "bilstm" in self.sequence.ops
            and self.sequence.hidden is None
            and self.shape.lstm_hidden % 2 != 0
        ):
            raise ValueError(
                f"sequence.ops has bilstm, which needs an even width, but shape.lstm_hidden is {self.shape.lstm_hidden}"
            )
        if self.score_controls and self.sequence.enabled:
            raise ValueError(
                f"score_controls={self.score_controls} does not yet work with sequence.enabled: a control's path "
                "through a searched sequence stage is not defined"
            )
        if self.score_controls > (size := genotype_space_size(primitives=self.primitives, nodes=self.shape.nodes)):
            raise ValueError(f"score_controls={self.score_controls}, but the search space holds {size} genotypes")
        if self.pt_finetune_epochs > 0 and self.selection != "perturbation":
            raise ValueError(
                f"pt_finetune_epochs={self.pt_finetune_epochs} needs selection='perturbation' "
                f"(it fine-tunes between DARTS-PT's decisions), but selection is {self.selection!r}"
            )
        return self

    @model_validator(mode="after")
    def _searchable_depth(self) -> SearchSettings:
        problem = search_depth_problem(self.shape.layers)
        if problem is not None:
            raise ValueError(f"shape.layers: {problem}")
        return self


class EvalSettings(_Settings):
    """Training the derived network from scratch, epoch chosen on validation speakers."""

    normalization: Normalization = Field(
        "speaker",
        description="input normalisation of the fold's features, for its search and evaluation alike "
        "(trainers.normalization): utterance, train, speaker or none",
    )
    mask_padding: bool = Field(
        True, description="the network pools over each clip's valid frames only (False: padding counts; ablations)"
    )
    shape: ModelShape = ModelShape()
    widen: float = Field(
        2.0,
        ge=1.0,
        le=16.0,
        description="init_channels of the from-scratch network = round(widen * shape.init_channels) "
        "(DARTS evaluates wider than it searches)",
    )
    deepen: int = Field(0, ge=0, le=32, description="cells added to shape.layers for the from-scratch network")
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(32, ge=1)
    weights: WeightOptimizer = WeightOptimizer()
    drop_path_prob: float = Field(
        0.0, ge=0, lt=1, description="drop-path probability, ramped linearly from 0 over the epochs (DARTS)"
    )
    auxiliary_weight: float = Field(
        0.4, ge=0, le=1, description="weight of an auxiliary head's loss after the last reduction cell (0: no head)"
    )
    imbalance: Imbalance = "weighted-loss"
    spec_augment: SpecAugment = SpecAugment()
    seed: int = 0
    checkpoint_every: int = Field(1, ge=1)
    mixed_precision: bool = Field(False, description="bf16 autocast for training and evaluation (GPU)")

    @property
    def network_layers(self) -> int:
        """Cells of the evaluated network: ``shape.layers`` deepened by ``deepen``."""
        return self.shape.layers + self.deepen

    @property
    def network_init_channels(self) -> int:
        """First-cell channels of the evaluated network: ``shape.init_channels`` widened by ``widen``."""
        return max(1, round(self.shape.init_channels * self.widen))


def with_defaults_for_missing(stored: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``stored`` (a ``model_dump`` of ``model`` written by an older version) with every setting it
    lacks filled in with its default, nested groups included.

    A checkpoint records its settings; one written before a setting existed ran with that
    setting's default, so it resumes under the default and is refused under any other value.
    """
    filled: dict[str, Any] = dict(stored)
    for name, info in model.model_fields.items():
        kind = info.annotation
        nested = isinstance(kind, type) and issubclass(kind, BaseModel)
        if name not in filled:
            default = info.get_default(call_default_factory=True)
            filled[name] = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
        elif nested and isinstance(filled[name], Mapping):
            filled[name] = with_defaults_for_missing(filled[name], kind)
    return filled
