import json
import math

import pytest
import torch

from search_space.genotype import Genotype, alpha_entropy, derive_genotype, num_edges

# DARTS (second order) CIFAR-10 cell, Liu et al. 2019
DARTS_V2 = Genotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=range(2, 6),
)

P = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")  # column order of hand-made alphas


def alphas(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------------------- value


def test_genotype_is_frozen_hashable_and_stores_tuples():
    assert DARTS_V2.normal[0] == ("sep_conv_3x3", 0)
    assert isinstance(DARTS_V2.normal, tuple) and isinstance(DARTS_V2.reduce_concat, tuple)
    assert DARTS_V2.normal_nodes == DARTS_V2.reduce_nodes == 4
    with pytest.raises(AttributeError):
        DARTS_V2.normal = ()  # type: ignore[misc]
    assert len({DARTS_V2, Genotype.from_json(DARTS_V2.to_json())}) == 1


def test_json_is_canonical_and_round_trips():
    text = DARTS_V2.to_json()
    assert " " not in text and "\n" not in text
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert Genotype.from_json(text) == DARTS_V2
    pretty = json.dumps(json.loads(text), indent=2)
    assert Genotype.from_json(pretty).to_json() == text


def test_hash_is_stable():
    # If this fails, the canonical JSON changed: every stored genotype hash would change too.
    assert DARTS_V2.hash == "75f8a6657311"
    assert DARTS_V2.to_json().startswith('{"normal":[["sep_conv_3x3",0],')


def test_hash_differs_for_different_genotypes():
    other = Genotype(
        normal=DARTS_V2.normal[:-1] + (("dil_conv_5x5", 2),),
        normal_concat=DARTS_V2.normal_concat,
        reduce=DARTS_V2.reduce,
        reduce_concat=DARTS_V2.reduce_concat,
    )
    assert other.hash != DARTS_V2.hash


def _with(**changes):
    data = DARTS_V2.to_dict()
    data.update(changes)
    return data


S3, MP, SK = "sep_conv_3x3", "max_pool_3x3", "skip_connect"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"normal": [["conv_7x7", 0], [S3, 1]]}, r"normal edge 0 \(node 0\).*'conv_7x7'"),
        ({"normal": [["none", 0], [S3, 1]]}, r"normal edge 0 \(node 0\) chooses 'none'"),
        (
            {"reduce": [[MP, 0], [MP, 1], [SK, 3], [SK, 1]]},
            r"reduce edge 2 \(node 1\) has input index 3, but node 1 may only read states 0..2",
        ),
        ({"normal": [[S3, -1], [S3, 1]]}, r"input index -1"),
        ({"normal": [[S3, True], [S3, 1]]}, r"input index True"),
        ({"normal": [[S3, 0], [S3, 1], [S3, 0]]}, r"two edges per node.*3 edges"),
        ({"normal": []}, r"two edges per node"),
        ({"normal": [[S3, 0, 1], [S3, 1]]}, r"must be an \(op_name, input_index\) pair"),
        ({"normal_concat": [2, 3, 4, 6]}, r"normal_concat has state index 6.*4 nodes"),
        ({"reduce_concat": [0, 2]}, r"reduce_concat has state index 0"),
        ({"reduce_concat": [2, 2]}, r"repeated"),
        ({"reduce_concat": []}, r"non-empty"),
    ],
)
def test_validation_names_the_problem(changes, message):
    with pytest.raises(ValueError, match=message):
        Genotype.from_dict(_with(**changes))


def test_from_json_rejects_bad_text_and_keys():
    with pytest.raises(ValueError, match="valid JSON"):
        Genotype.from_json("Genotype(normal=[...])")
    with pytest.raises(ValueError, match=r"\['reduce_concat'\] are missing and \['extra'\]"):
        data = _with(extra=1)
        del data["reduce_concat"]
        Genotype.from_json(json.dumps(data))
    with pytest.raises(ValueError, match="JSON object"):
        Genotype.from_json("[1, 2]")


# ----------------------------------------------------------------------------- derivation

# Rows are logits over P = (none, max_pool_3x3, skip_connect, sep_conv_3x3); 2 nodes -> 5 edges
# (node 0: inputs 0, 1; node 1: inputs 0, 1, 2). Softmax weights, worked out by hand:
SKIPPY = alphas(
    [0, 0, 3, 2],  # e0: skip .681, sep .251
    [0, 1, 4, 0],  # e1: skip .920, max .046, sep .017
    [0, 0, 2, 1.5],  # e2: skip .533, sep .323
    [0, 0, 0, 2.5],  # e3: sep .802
    [0, 1, 0, 0],  # e4: max .475
)


def derive(normal, reduce=None, **kwargs):
    kwargs.setdefault("max_skip_normal", None)
    return derive_genotype(normal, normal if reduce is None else reduce, primitives=P, nodes=2, **kwargs)


def test_derive_keeps_top_two_edges_by_strongest_op():
    g = derive(SKIPPY)
    assert g.normal == (
        ("skip_connect", 0),
        ("skip_connect", 1),
        ("skip_connect", 0),  # e2 (.533) beats e4 (.475); e3 (.802) is first
        ("sep_conv_3x3", 1),
    )
    assert g.normal_concat == g.reduce_concat == (2, 3)


def test_skip_cap_replaces_the_weakest_skip_by_the_next_best_edge_or_op():
    # cap 2: e2's skip (.533) is the weakest; e2 falls back to sep (.323), which loses to e4.
    g2 = derive(SKIPPY, max_skip_normal=2)
    assert g2.normal == (
        ("skip_connect", 0),
        ("skip_connect", 1),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 2),
    )
    # cap 1: then e0's skip (.681) goes; node 0 has only two inputs, so e0 keeps its next op.
    g1 = derive(SKIPPY, max_skip_normal=1)
    assert g1.normal[:2] == (("sep_conv_3x3", 0), ("skip_connect", 1))
    assert g1.normal[2:] == g2.normal[2:]
    # cap 0: e1's skip goes too; its next-best op is max_pool (.046 > sep .017).
    g0 = derive(SKIPPY, max_skip_normal=0)
    assert g0.normal[:2] == (("sep_conv_3x3", 0), ("max_pool_3x3", 1))
    # the reduction cell is never capped
    assert g0.reduce == derive(SKIPPY).normal
    # default cap is 2
    assert derive_genotype(SKIPPY, SKIPPY, primitives=P, nodes=2) == g2


def test_none_is_never_chosen_even_where_it_dominates():
    g = derive(
        alphas(
            [5, 0, 0, 1],  # e0: none dominates; best real op is sep
            [5, 2, 0, 0],  # e1: none dominates; best real op is max_pool
            [6, 0, 0, 3],  # e2: largest raw sep logit, but none takes the mass: sep .047
            [0, 0, 0, 1],  # e3: sep .475
            [0, 1.2, 0, 0],  # e4: max .525
        )
    )
    assert g.normal == (
        ("sep_conv_3x3", 0),
        ("max_pool_3x3", 1),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 2),
    )


def test_ties_go_to_the_lower_input_and_the_first_op():
    g = derive(torch.zeros(5, 4))
    assert g.normal == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 2


def test_edge_normalisation_betas_weight_the_edges():
    betas = torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0])
    g = derive(torch.zeros(5, 4), beta_normal=betas, beta_reduce=torch.zeros(5))
    assert g.normal[2:] == (("max_pool_3x3", 0), ("max_pool_3x3", 2))
    assert g.reduce[2:] == (("max_pool_3x3", 0), ("max_pool_3x3", 1))


def test_derive_checks_shapes_and_arguments():
    with pytest.raises(ValueError, match=r"alpha_normal must have shape \(5, 4\), but got \(4, 4"):
        derive(torch.zeros(4, 4), torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"beta_normal must have shape \(5,\)"):
        derive(torch.zeros(5, 4), beta_normal=torch.zeros(4))
    with pytest.raises(ValueError, match="max_skip_normal must be None or an int >= 0"):
        derive(SKIPPY, max_skip_normal=-1)
    with pytest.raises(ValueError, match="loosen max_skip_normal"):
        derive_genotype(
            torch.zeros(5, 2),
            torch.zeros(5, 2),
            primitives=("none", "skip_connect"),
            nodes=2,
            max_skip_normal=1,
        )


def test_num_edges():
    assert [num_edges(n) for n in (1, 2, 3, 4)] == [2, 5, 9, 14]


def test_alpha_entropy():
    uniform = torch.zeros(14, 8)
    assert alpha_entropy(uniform) == pytest.approx(math.log(8))
    assert alpha_entropy(uniform, uniform, normalized=True) == pytest.approx(1.0)
    decided = torch.full((14, 8), -50.0)
    decided[:, 3] = 50.0
    assert alpha_entropy(decided) == pytest.approx(0.0, abs=1e-12)
    assert alpha_entropy(uniform, decided) == pytest.approx(math.log(8) / 2)
    with pytest.raises(ValueError, match="at least one"):
        alpha_entropy()
