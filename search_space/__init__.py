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
    derive_sequence,
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
from search_space.sequence_cell import (
    SEQUENCE_OPS,
    MixedSequenceOp,
    SearchSequenceCell,
    SequenceCell,
    build_sequence_op,
    sequence_num_edges,
    validate_sequence_ops,
)
from search_space.supernet import MixingWeights, SuperNet

__all__ = [
    "MODEL_NAMES",
    "OPS",
    "PARAMETER_FREE_OPS",
    "PRIMITIVES",
    "SEQUENCE_OPS",
    "Architecture",
    "BaselineCNNLSTM",
    "Cell",
    "Genotype",
    "HeadOptions",
    "LayerMix",
    "LayerMixOptions",
    "MixedOp",
    "MixedSequenceOp",
    "MixingWeights",
    "NamedModel",
    "Network",
    "OpFactory",
    "RecurrentHead",
    "SearchCell",
    "SearchSequenceCell",
    "SequenceCell",
    "SuperNet",
    "alpha_entropy",
    "architecture_key",
    "architecture_text",
    "baseline_channels",
    "build_model",
    "build_op",
    "build_sequence_op",
    "channel_shuffle",
    "count_parameters",
    "derive_genotype",
    "derive_sequence",
    "drop_path",
    "frozen_batchnorm_stats",
    "genotype_space_size",
    "node_softmax",
    "num_edges",
    "parse_architecture",
    "reduction_layers",
    "sample_genotype",
    "sample_genotypes",
    "sequence_num_edges",
    "validate_primitives",
    "validate_sequence_ops",
]
