"""Search space for DARTS on speech features (pure torch).

Primitives and their registry, the Genotype value and uniform draws from a space of them, the
supernet's mixed edges and cells, the SuperNet (and the mixing weights that pick sub-networks of
it), and the discrete networks (a Genotype's Network and the CNN-LSTM baseline).
"""

from search_space.architecture import (
    MODEL_NAMES,
    Architecture,
    NamedModel,
    architecture_key,
    architecture_text,
    parse_architecture,
)
from search_space.cells import Cell, SearchCell, drop_path, reduction_layers
from search_space.frontend import LayerMix, LayerMixOptions
from search_space.genotype import (
    Genotype,
    alpha_entropy,
    derive_genotype,
    node_softmax,
    num_edges,
)
from search_space.head import HeadOptions, RecurrentHead
from search_space.mixed_op import MixedOp, channel_shuffle, frozen_batchnorm_stats
from search_space.network import (
    BaselineCNNLSTM,
    Network,
    baseline_channels,
    build_model,
    count_parameters,
)
from search_space.primitives import (
    OPS,
    PARAMETER_FREE_OPS,
    PRIMITIVES,
    OpFactory,
    build_op,
    validate_primitives,
)
from search_space.sampling import genotype_space_size, sample_genotype, sample_genotypes
from search_space.supernet import MixingWeights, SuperNet

__all__ = [
    "MODEL_NAMES",
    "OPS",
    "PARAMETER_FREE_OPS",
    "PRIMITIVES",
    "Architecture",
    "BaselineCNNLSTM",
    "Cell",
    "Genotype",
    "HeadOptions",
    "LayerMix",
    "LayerMixOptions",
    "MixedOp",
    "MixingWeights",
    "NamedModel",
    "Network",
    "OpFactory",
    "RecurrentHead",
    "SearchCell",
    "SuperNet",
    "alpha_entropy",
    "architecture_key",
    "architecture_text",
    "baseline_channels",
    "build_model",
    "build_op",
    "channel_shuffle",
    "count_parameters",
    "derive_genotype",
    "drop_path",
    "frozen_batchnorm_stats",
    "genotype_space_size",
    "node_softmax",
    "num_edges",
    "parse_architecture",
    "reduction_layers",
    "sample_genotype",
    "sample_genotypes",
    "validate_primitives",
]
