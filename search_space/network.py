"""Discrete networks trained from scratch: a Genotype's network and the hand-made baseline.

Both map (B, in_channels, F, T) features to (B, n_classes) logits through the same recurrent
head as the supernet. :func:`build_model` picks one by Genotype, by genotype JSON, or by name
(``"baseline"``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from search_space.architecture import Architecture, NamedModel, parse_architecture
from search_space.cells import Cell, reduction_layers, stack_cells
from search_space.frontend import LayerMix, LayerMixOptions, network_input
from search_space.genotype import Genotype
from search_space.head import HeadOptions, RecurrentHead, head_lengths, masked_time_mean
from search_space.sequence_cell import SequenceCell

__all__ = [
    "AuxiliaryHead",
    "BaselineCNNLSTM",
    "Network",
    "baseline_channels",
    "build_model",
    "count_parameters",
]


def _check_input(x: torch.Tensor, in_channels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{who} expects input of shape (B, {in_channels}, F, T), but got {tuple(x.shape)}.")


def _frontend(
    frontend: LayerMixOptions | Mapping[str, Any] | None, in_channels: int, who: str
) -> tuple[LayerMixOptions | None, int]:
    """The frontend's options and the channels the stem reads (1 after a frontend)."""
    options = LayerMixOptions.of(frontend)
    if options is None:
        return None, in_channels
    if options.layers != in_channels:
        raise ValueError(
            f"{who}: in_channels ({in_channels}) must equal the frontend's layers ({options.layers}): "
            "the input stacks one map per encoder layer."
        )
    return options, 1


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier, sized for spectrograms: ReLU -> mean over frequency and over
    each clip's valid frames -> linear. Training adds its loss (weighted) to push gradient into
    the lower cells; it is never used for prediction."""

    def __init__(self, in_channels: int, *, n_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(in_channels, n_classes)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, *, input_frames: int | None = None
    ) -> torch.Tensor:
        steps = None
        if lengths is not None:
            steps = head_lengths(lengths, input_frames=input_frames or x.shape[-1], frames=x.shape[-1])  # (B,)
        pooled = masked_time_mean(torch.relu(x).mean(dim=2).transpose(1, 2), steps)  # (B, C)
        return self.classifier(pooled)  # (B, n_classes)


class Network(nn.Module):
    """The network of a derived Genotype: stem -> ``layers`` cells -> recurrent head.

    Same macro-structure as :class:`search_space.SuperNet` (reduction cells at 1/3 and 2/3 of
    the depth, channels doubling there). ``drop_path_prob`` is a plain attribute so a trainer
    can schedule it per epoch; it acts in training mode only. ``mask_padding=False`` ignores
    the clips' lengths (padding is pooled; for ablations). ``auxiliary=True`` adds an
    :class:`AuxiliaryHead` after the last reduction cell (DARTS), read by :meth:`forward_with_aux`
    in training mode. ``head`` (:class:`search_space.head.HeadOptions`, or its dict) sets what the
    LSTM reads per time step and how it pools a clip; the genotype does not say, so it is part of
    the network's ``config``. A genotype with a ``sequence`` cell gets that cell (hidden size
    ``lstm_hidden``) in place of the fixed LSTM; ``lstm_layers`` then goes unused. ``frontend``
    (:class:`search_space.frontend.LayerMixOptions`, or its dict) reads stacked encoder layers
    ``(B, L, D, T)`` (``in_channels`` = L) through a learned weighted sum and a projection to
    ``(B, 1, width, T)`` before the stem (None: spectrograms).

    ``channels_last=True`` (the default) keeps the cells' activations in channels_last layout and
    runs the convolutions through :mod:`search_space.fast_conv`, as :class:`search_space.SuperNet`
    does; outputs equal the default layout's (``channels_last=False``) up to float rounding.
    """

    def __init__(
        self,
        genotype: Genotype,
        *,
        layers: int,
        init_channels: int,
        n_classes: int,
        lstm_hidden: int = 128,
        lstm_layers: int = 1,
        dropout: float = 0.3,
        drop_path_prob: float = 0.0,
        stem_multiplier: int = 3,
        in_channels: int = 1,
        auxiliary: bool = False,
        mask_padding: bool = True,
        channels_last: bool = True,
        head: HeadOptions | Mapping[str, Any] | None = None,
        frontend: LayerMixOptions | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(genotype, Genotype):
            raise ValueError(
                f"genotype must be a Genotype, but got {type(genotype).__name__}; "
                "use Genotype.from_json or build_model for JSON text."
            )
        for name, value in (
            ("init_channels", init_channels),
            ("stem_multiplier", stem_multiplier),
            ("in_channels", in_channels),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, but got {value!r}.")
        self.genotype = genotype
        self.in_channels = in_channels
        self.drop_path_prob = drop_path_prob
        head = HeadOptions.of(head)
        frontend, stem_channels = _frontend(frontend, in_channels, "Network")
        self._config: dict[str, Any] = {
            "genotype": genotype.to_dict(),
            "layers": layers,
            "init_channels": init_channels,
            "n_classes": n_classes,
            "lstm_hidden": lstm_hidden,
            "lstm_layers": lstm_layers,
            "dropout": dropout,
            "drop_path_prob": drop_path_prob,
            "stem_multiplier": stem_multiplier,
            "in_channels": in_channels,
            "auxiliary": bool(auxiliary),
            "mask_padding": bool(mask_padding),
            "head": head.to_dict(),
            "frontend": None if frontend is None else frontend.to_dict(),
        }
        self.mask_padding = bool(mask_padding)
        self.channels_last = bool(channels_last)  # a layout, not part of the model: not in config
        self.frontend = None if frontend is None else LayerMix(frontend)

        self.stem, self.cells, C_p = stack_cells(
            layers=layers,
            in_channels=stem_channels,
            stem_multiplier=stem_multiplier,
            init_channels=init_channels,
            make_cell=functools.partial(Cell, genotype),
        )
        self.aux_layer = reduction_layers(layers)[-1]
        self.aux_head = None
        if auxiliary:
            self.aux_head = AuxiliaryHead(self.cells[self.aux_layer].out_channels, n_classes=n_classes)
        self.head = RecurrentHead(
            C_p,
            n_classes=n_classes,
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            dropout=dropout,
            options=head,
            sequence_cell=None if genotype.sequence is None else SequenceCell(genotype.sequence, hidden=lstm_hidden),
        )

    @property
    def config(self) -> dict[str, Any]:
        """Constructor keywords, JSON-ready (the genotype as a dict); see :func:`build_model`."""
        return dict(
            self._config,
            genotype=self.genotype.to_dict(),
            head=dict(self._config["head"]),
            frontend=_copy(self._config),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, n_classes) of ``x`` (B, C_in, F, T); ``lengths`` (B,): valid frames per clip."""
        return self.forward_with_aux(x, lengths)[0]

    def forward_with_aux(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and, in training mode with an auxiliary head, its logits (else None)."""
        _check_input(x, self.in_channels, "Network")
        lengths = lengths if self.mask_padding else None
        s0 = s1 = self.stem(network_input(x, lengths, self.frontend))  # (B, C_stem, F, T)
        if self.channels_last:  # activations only, as in SuperNet (see the class docstring)
            s0 = s1 = s0.contiguous(memory_format=torch.channels_last)  # strides (F T C, 1, T C, C)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)  # (B, mult * C, F', T')
            if i == self.aux_layer and self.aux_head is not None and self.training:
                aux = self.aux_head(s1, lengths, input_frames=x.shape[-1])  # (B, n_classes)
        return self.head(s1, lengths, input_frames=x.shape[-1]), aux  # (B, n_classes)


def baseline_channels(init_channels: int, layers: int) -> tuple[int, ...]:
    """Channels of the baseline's conv blocks: ``2 * init_channels``, doubling per block."""
    if init_channels < 1 or layers < 1:
        raise ValueError(f"init_channels and layers must be >= 1, but got {init_channels} and {layers}.")
    return tuple(init_channels * 2 ** (i + 1) for i in range(layers))


class BaselineCNNLSTM(nn.Module):
    """Hand-engineered CNN-LSTM (the paper's comparison point).

    One block per entry of ``channels``: Conv 3x3 -> BatchNorm -> ReLU -> MaxPool 2x2 (which
    halves F and T, rounding up), then the same recurrent head as the searched networks, with the
    same ``head`` options (:class:`search_space.head.HeadOptions`).
    """

    def __init__(
        self,
        *,
        n_classes: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        lstm_hidden: int = 128,
        lstm_layers: int = 1,
        dropout: float = 0.3,
        in_channels: int = 1,
        mask_padding: bool = True,
        head: HeadOptions | Mapping[str, Any] | None = None,
        frontend: LayerMixOptions | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        channels = tuple(channels)
        head = HeadOptions.of(head)
        if not channels or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in channels):
            raise ValueError(f"channels must be a non-empty sequence of ints >= 1, but got {channels}.")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1, but got {in_channels!r}.")
        frontend, stem_channels = _frontend(frontend, in_channels, "BaselineCNNLSTM")
        self.in_channels = in_channels
        self._config: dict[str, Any] = {
            "n_classes": n_classes,
            "channels": list(channels),
            "lstm_hidden": lstm_hidden,
            "lstm_layers": lstm_layers,
            "dropout": dropout,
            "in_channels": in_channels,
            "mask_padding": bool(mask_padding),
            "head": head.to_dict(),
            "frontend": None if frontend is None else frontend.to_dict(),
        }
        self.mask_padding = bool(mask_padding)
        self.frontend = None if frontend is None else LayerMix(frontend)
        blocks, c_in = [], stem_channels
        for c in channels:
            blocks += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, 2, ceil_mode=True),
            ]
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.head = RecurrentHead(
            c_in,
            n_classes=n_classes,
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            dropout=dropout,
            options=head,
        )

    @property
    def config(self) -> dict[str, Any]:
        """Constructor keywords, JSON-ready."""
        return dict(
            self._config,
            channels=list(self._config["channels"]),
            head=dict(self._config["head"]),
            frontend=_copy(self._config),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, n_classes); ``lengths`` (B,): valid frames of each clip (None: all)."""
        _check_input(x, self.in_channels, "BaselineCNNLSTM")
        lengths = lengths if self.mask_padding else None
        features = self.features(network_input(x, lengths, self.frontend))  # (B, channels[-1], F / 2^n, T / 2^n)
        return self.head(features, lengths, input_frames=x.shape[-1])  # (B, n_classes)


def build_model(
    genotype_or_name: Architecture | str,
    *,
    layers: int,
    init_channels: int,
    n_classes: int,
    lstm_hidden: int = 128,
    lstm_layers: int = 1,
    dropout: float = 0.3,
    drop_path_prob: float = 0.0,
    stem_multiplier: int = 3,
    in_channels: int = 1,
    auxiliary: bool = False,
    mask_padding: bool = True,
    head: HeadOptions | Mapping[str, Any] | None = None,
    frontend: LayerMixOptions | Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build the network to train from scratch.

    ``genotype_or_name`` is an architecture value (a :class:`Genotype` or a :class:`NamedModel`)
    or its text (see :func:`parse_architecture`): ``baseline`` gives a
    :class:`BaselineCNNLSTM` with ``layers`` blocks of :func:`baseline_channels` channels
    (``drop_path_prob``, ``stem_multiplier`` and ``auxiliary`` do not apply to it). ``head``
    applies to both (:class:`search_space.head.HeadOptions`; None: the defaults), and so does
    ``frontend`` (stacked encoder layers in; None: spectrograms).
    """
    architecture = parse_architecture(genotype_or_name)
    if isinstance(architecture, NamedModel):  # "baseline", the only named model
        return BaselineCNNLSTM(
            n_classes=n_classes,
            channels=baseline_channels(init_channels, layers),
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            dropout=dropout,
            in_channels=in_channels,
            mask_padding=mask_padding,
            head=head,
            frontend=frontend,
        )
    genotype = architecture
    return Network(
        genotype,
        layers=layers,
        init_channels=init_channels,
        n_classes=n_classes,
        lstm_hidden=lstm_hidden,
        lstm_layers=lstm_layers,
        dropout=dropout,
        drop_path_prob=drop_path_prob,
        stem_multiplier=stem_multiplier,
        in_channels=in_channels,
        auxiliary=auxiliary,
        mask_padding=mask_padding,
        head=head,
        frontend=frontend,
    )


def _copy(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """A copy of a config's frontend dict (None stays None)."""
    frontend = config["frontend"]
    return None if frontend is None else dict(frontend)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of parameter elements (for a SuperNet, arch weights included; use
    ``sum(p.numel() for p in net.weight_parameters())`` for weights only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
