from dataclasses import replace

import pytest
import torch

from search_space import sample_genotype
from search_space.cells import reduction_layers
from search_space.genotype import Genotype, num_edges
from search_space.primitives import PARAMETER_FREE_OPS, PRIMITIVES
from search_space.supernet import SuperNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = dict(layers=3, nodes=2, init_channels=4, n_classes=3, lstm_hidden=6, dropout=0.1)


def make(seed=0, **overrides):
    torch.manual_seed(seed)
    return SuperNet(**{**TINY, **overrides})


def test_reduction_layers():
    assert reduction_layers(4) == (1, 2)
    assert reduction_layers(8) == (2, 5)
    assert reduction_layers(1) == (0,)
    with pytest.raises(ValueError, match="layers must be an int >= 1, but got 0"):
        reduction_layers(0)


@pytest.mark.parametrize("size", [(16, 20), (13, 7)])
def test_forward_shape(size):
    net = make()
    assert net(torch.randn(2, 1, *size)).shape == (2, 3)


def test_multichannel_input_and_shape_check():
    net = make(in_channels=2)
    assert net(torch.randn(2, 2, 8, 8)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"\(B, 2, F, T\), but got \(2, 1, 8, 8\)"):
        net(torch.randn(2, 1, 8, 8))


def test_logits_do_not_depend_on_batch_mates_in_eval_mode():
    net = make().eval()
    x = torch.randn(4, 1, 12, 10)
    with torch.no_grad():
        batched = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(4)])
        shuffled = net(x.flip(0)).flip(0)
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shuffled, batched, atol=1e-5, rtol=1e-4)


def test_alphas_live_in_state_dict_and_are_separate_from_weights():
    net = make()
    state = net.state_dict()
    E = num_edges(2)
    assert state["alphas_normal"].shape == state["alphas_reduce"].shape == (E, len(PRIMITIVES))
    arch = list(net.arch_parameters())
    weights = list(net.weight_parameters())
    assert [name for name, _ in net.named_arch_parameters()] == ["alphas_normal", "alphas_reduce"]
    assert {id(p) for p in arch}.isdisjoint({id(p) for p in weights})
    assert {id(p) for p in arch} | {id(p) for p in weights} == {id(p) for p in net.parameters()}
    assert not any("alphas" in name for name, _ in net.named_weight_parameters())


def test_state_dict_round_trip_restores_the_genotype():
    net = make(seed=1)
    with torch.no_grad():
        net.alphas_normal.normal_(0, 3)
        net.alphas_reduce.normal_(0, 3)
    clone = SuperNet(**net.config)
    clone.load_state_dict(net.state_dict())
    assert clone.genotype() == net.genotype()


def test_genotype_and_reporting_helpers():
    net = make()
    g = net.genotype(max_skip_normal=None)
    assert isinstance(g, Genotype) and g.normal_nodes == 2
    assert net.alpha_entropy(normalized=True) == pytest.approx(1.0, abs=1e-4)
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_normal[:, PRIMITIVES.index("skip_connect")] = 5.0
        net.alphas_reduce.zero_()
        net.alphas_reduce[:, PRIMITIVES.index("max_pool_3x3")] = 5.0
    dominant = net.dominant_ops()
    assert dominant["normal"] == ["skip_connect"] * 5 and dominant["reduce"] == ["max_pool_3x3"] * 5
    assert set(dominant["normal"] + dominant["reduce"]) <= PARAMETER_FREE_OPS
    assert [op for op, _ in net.genotype(max_skip_normal=1).normal].count("skip_connect") == 1


def test_gradients_reach_every_alpha_including_none():
    net = make()
    net(torch.randn(2, 1, 8, 8)).sum().backward()
    for p in net.arch_parameters():
        assert p.grad is not None and torch.all(p.grad[:, PRIMITIVES.index("none")] != 0)


def test_custom_primitives():
    net = make(primitives=["none", "skip_connect", "sep_conv_3x3"])
    assert net.alphas_normal.shape == (5, 3)
    assert net(torch.randn(1, 1, 8, 8)).shape == (1, 3)
    with pytest.raises(ValueError, match="conv_9x9"):
        make(primitives=["none", "conv_9x9"])


@pytest.mark.parametrize("pc_k", [2, 4])
def test_partial_channels(pc_k):
    net = make(pc_k=pc_k, edge_normalization=True)
    names = [name for name, _ in net.named_arch_parameters()]
    assert names == ["alphas_normal", "alphas_reduce", "betas_normal", "betas_reduce"]
    assert net.state_dict()["betas_normal"].shape == (num_edges(2),)
    out = net(torch.randn(2, 1, 11, 9))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert net.betas_normal.grad is not None
    assert isinstance(net.genotype(), Genotype)


def test_pc_k_must_divide_init_channels():
    with pytest.raises(ValueError, match=r"init_channels \(4\) must be divisible by pc_k \(3\)"):
        make(pc_k=3)


def test_same_seed_same_outputs_and_gradients():
    x = torch.randn(2, 1, 9, 8)
    runs = []
    for _ in range(2):
        net = make(seed=7)
        out = net(x)
        out.sum().backward()
        runs.append((out.detach(), net.alphas_normal.grad.clone()))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(make(seed=8)(x), runs[0][0])


def test_checkpointing_gives_the_same_step():
    x = torch.randn(2, 1, 9, 8)
    runs = []
    for checkpoint in (False, True):
        net = make(seed=3, checkpoint=checkpoint)
        out = net(x)
        out.sum().backward()
        runs.append((out.detach(), [p.grad for p in net.parameters()], list(net.buffers())))
    torch.testing.assert_close(runs[0][0], runs[1][0])
    for a, b in zip(runs[0][1] + runs[0][2], runs[1][1] + runs[1][2]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("layers", [1, 2])
def test_a_supernet_without_a_normal_cell_is_refused(layers):
    """Below 3 layers every cell is a reduction cell: alphas_normal would never get a gradient and
    the derived normal cell would be the initial noise."""
    assert set(reduction_layers(layers)) == set(range(layers))
    with pytest.raises(ValueError, match=f"a search needs at least 3 layers, but got {layers}"):
        make(layers=layers)
    net = make(layers=3)
    assert len(reduction_layers(3)) < 3 and net.alphas_normal is not None


def test_search_settings_name_the_shallow_shape():
    from pydantic import ValidationError

    from trainers.settings import EvalSettings, ModelShape, SearchSettings

    with pytest.raises(ValidationError, match="shape.layers: a search needs at least 3 layers, but got 2"):
        SearchSettings(shape=ModelShape(layers=2))
    assert EvalSettings(shape=ModelShape(layers=2)).shape.layers == 2  # a fixed network may be that shallow


def test_pc_darts_edge_weights_decide_which_inputs_a_node_keeps():
    """With edge normalisation a node keeps the two inputs with the strongest alpha times the
    softmax of its edges' betas: an edge whose alphas are strongest is dropped when its beta is low."""
    net = make(pc_k=2, edge_normalization=True, primitives=["none", "skip_connect", "sep_conv_3x3"])
    conv = net.primitives.index("sep_conv_3x3")
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_normal[:, conv] = 1.0
        net.alphas_normal[2, conv] = 5.0  # node 1's edge from input 0: strongest by its alphas
        net.betas_normal.zero_()
    assert ("sep_conv_3x3", 0) in net.genotype().normal[2:4]
    with torch.no_grad():
        net.betas_normal[2] = -10.0  # ... but its edge weight is small
    assert [index for _, index in net.genotype().normal[2:4]] == [1, 2]


# ------------------------------------------------------------------ mixing weights: paths and masks


def all_ops_computed(net):
    """The same net computing every op and edge, zero weights included (the plan disabled)."""
    net._plan = lambda ops, edges: None  # an instance attribute shadows the method
    return net


def ran_ops(net, x, **kwargs):
    """(cell, edge, op column) of every operation that ran during ``net(x, **kwargs)``."""
    ran, handles = set(), []
    for c, cell in enumerate(net.cells):
        for e, edge in enumerate(cell.edges):
            for k, op in zip(edge.op_index, edge.ops):
                for module in op.modules():  # separable convolutions skip their own forward (forward_relu)
                    handles.append(module.register_forward_hook(lambda *_, key=(c, e, k): ran.add(key)))
    net(x, **kwargs)
    for handle in handles:
        handle.remove()
    return ran


def test_default_mixing_is_the_softmax_of_the_alphas():
    net = make(edge_normalization=True).train()
    x = torch.randn(3, 1, 12, 10)
    torch.manual_seed(1)
    plain = net(x)
    torch.manual_seed(1)
    mixed = net(x, mixing=net.mixing_weights())
    assert torch.equal(plain, mixed)
    w = net.mixing_weights()
    torch.testing.assert_close(w.normal.sum(dim=1), torch.ones(num_edges(2)))
    assert w.normal_edges is not None and w.normal_edges.shape == (num_edges(2),)


@pytest.mark.parametrize("pc_k", [1, 2])
def test_a_path_runs_only_its_genotypes_ops_and_equals_the_dense_computation(pc_k):
    """path_mixing(g): weight 1 on g's (edge, op) pairs; only those ops run (the hand count: 2 ops
    per node, per cell), and the logits equal those of computing every op with its zero weight."""
    primitives = ("none", "skip_connect", "avg_pool_3x3", "sep_conv_3x3")
    net = make(primitives=primitives, pc_k=pc_k, dropout=0.0).train()
    genotype = Genotype(
        normal=[("sep_conv_3x3", 0), ("skip_connect", 1), ("avg_pool_3x3", 0), ("sep_conv_3x3", 2)],
        normal_concat=[2, 3],
        reduce=[("skip_connect", 0), ("skip_connect", 1), ("sep_conv_3x3", 1), ("avg_pool_3x3", 2)],
        reduce_concat=[2, 3],
    )
    mixing = net.path_mixing(genotype)
    # edges of node 0: inputs 0, 1 (rows 0, 1); node 1: inputs 0, 1, 2 (rows 2, 3, 4)
    assert mixing.normal_edges.tolist() == [1, 1, 1, 0, 1] and mixing.reduce_edges.tolist() == [1, 1, 0, 1, 1]
    assert mixing.normal[4].tolist() == [0, 0, 0, 1] and mixing.reduce[2].tolist() == [0, 0, 0, 0]
    x = torch.randn(4, 1, 12, 10)
    ran = ran_ops(net, x, mixing=mixing)
    column = {op: primitives.index(op) for op in primitives}
    expected = set()
    for c, cell in enumerate(net.cells):
        edges = genotype.reduce if cell.reduction else genotype.normal
        for i, (op, j) in enumerate(edges):
            expected.add((c, i // 2 * (i // 2 + 3) // 2 + j, column[op]))
    assert ran == expected and len(ran) == 4 * len(net.cells)

    path = net(x, mixing=mixing)
    dense = all_ops_computed(net)(x, mixing=mixing)
    torch.testing.assert_close(path, dense, rtol=0, atol=1e-6)


def test_a_paths_backward_leaves_other_operations_without_gradient():
    primitives = ("skip_connect", "sep_conv_3x3", "dil_conv_3x3")
    net = make(primitives=primitives, dropout=0.0).train()
    genotype = Genotype(
        normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 1)],
        normal_concat=[2, 3],
        reduce=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 1)],
        reduce_concat=[2, 3],
    )
    net(torch.randn(2, 1, 12, 10), mixing=net.path_mixing(genotype)).sum().backward()
    for cell in net.cells:
        sep, dil = cell.edges[0].ops[1], cell.edges[0].ops[2]
        assert all(p.grad is not None for p in sep.parameters())
        assert all(p.grad is None for p in dil.parameters())
    assert all(p.grad is None for p in net.arch_parameters())


def test_masking_an_operation_equals_its_zero_weight_and_a_node_needs_an_edge():
    net = make(dropout=0.0).eval()
    x = torch.randn(2, 1, 12, 10)
    mixing = net.mixing_weights().detached()
    mixing.normal[3, PRIMITIVES.index("sep_conv_3x3")] = 0.0  # DARTS-PT: one op masked out of one edge
    with torch.no_grad():
        torch.testing.assert_close(net(x, mixing=mixing), all_ops_computed(make(dropout=0.0).eval())(x, mixing=mixing))
        edges = torch.ones(num_edges(2))
        edges[0] = edges[1] = 0.0  # node 0 keeps no input
        with pytest.raises(ValueError, match="node 0 of the cell has no incoming edge left"):
            net(x, mixing=replace(mixing, normal_edges=edges))


def test_mixing_and_paths_that_do_not_fit_the_supernet_are_refused():
    net = make()
    with pytest.raises(ValueError, match=r"mixing.normal must have shape \(5, 8\), but got \(5, 7\)"):
        net(torch.randn(1, 1, 8, 8), mixing=replace(net.mixing_weights(), normal=torch.ones(5, 7)))
    four_nodes = sample_genotype(0, primitives=PRIMITIVES, nodes=4)
    with pytest.raises(ValueError, match="genotype.normal has 4 node.* the supernet's cells have 2"):
        net.path_mixing(four_nodes)
    small = make(primitives=("skip_connect", "avg_pool_3x3"))
    with pytest.raises(ValueError, match="uses 'sep_conv_3x3', which is not among the supernet's primitives"):
        small.path_mixing(Genotype.from_dict({**four_nodes.to_dict(), **two_node_cells("sep_conv_3x3")}))


def two_node_cells(op):
    cell = [[op, 0], [op, 1], [op, 0], [op, 2]]
    return {"normal": cell, "reduce": cell, "normal_concat": [2, 3], "reduce_concat": [2, 3]}
