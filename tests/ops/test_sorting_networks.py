import itertools

import numpy as np
import pytest

from keras_topk.ops import build_network, sorting_networks
from tests.references import difftopk_reference


def all_binary_inputs(n):
    return np.array(list(itertools.product([0, 1], repeat=n)), dtype=np.int64)


@pytest.mark.parametrize("n", range(2, 12))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_splitter_selection_selects_top_k_for_every_binary_input(n, k):
    # 0-1 principle: a comparator network that selects the top k of every 0/1
    # input selects the top k of every input.
    if k > n:
        pytest.skip("k > n")
    net = build_network("splitter_selection", n, k)
    x = all_binary_inputs(n)
    out = net.apply_hard(x)
    expected = -np.sort(-x, axis=1)[:, :k]
    np.testing.assert_array_equal(out[:, ::-1][:, :k], expected)


@pytest.mark.parametrize("kind", ["bitonic", "odd_even"])
@pytest.mark.parametrize("n", range(1, 13))
def test_sorting_networks_sort_every_binary_input(kind, n):
    net = build_network(kind, n, n)
    x = all_binary_inputs(n)
    np.testing.assert_array_equal(net.apply_hard(x), np.sort(x, axis=1))


@pytest.mark.parametrize(
    "kind,n,k", [("splitter_selection", 37, 5), ("bitonic", 100, 5), ("odd_even", 20, 3)]
)
def test_networks_select_top_k_of_random_real_inputs(kind, n, k, rng):
    net = build_network(kind, n, k)
    x = rng.normal(size=(200, n))
    np.testing.assert_array_equal(net.apply_hard(x)[:, -k:], np.sort(x, axis=1)[:, -k:])


@pytest.mark.parametrize(
    "kind,n,k,layers,comparators",
    [
        ("splitter_selection", 16, 5, 10, None),
        ("splitter_selection", 100, 5, 17, 385),
        ("splitter_selection", 1000, 5, 22, 5085),
        ("bitonic", 1000, 5, 55, 27268),
        ("odd_even", 10, 10, 10, 45),
    ],
)
def test_network_sizes_match_the_paper(kind, n, k, layers, comparators):
    net = build_network(kind, n, k)
    assert len(net.layers) == layers
    if comparators is not None:
        assert net.num_comparators == comparators


@pytest.mark.parametrize(
    "kind,n,k", [("splitter_selection", 50, 5), ("bitonic", 21, 5), ("odd_even", 9, 3)]
)
def test_layers_hold_disjoint_ordered_comparators_and_consistent_wire_tables(kind, n, k):
    net = build_network(kind, n, k)
    for layer in net.layers:
        wires = np.concatenate([layer.a, layer.b])
        assert len(set(wires.tolist())) == wires.size
        assert np.all(layer.a < layer.b)
        # Each comparator writes its two wires, one the minimum and one the maximum.
        np.testing.assert_array_equal(
            np.sort(np.stack([layer.min_wire, layer.max_wire]), axis=0),
            np.stack([layer.a, layer.b]),
        )
        assert wires.max() < n


def test_network_arrays_are_index_vectors_not_matrices():
    net = build_network("bitonic", 1000, 5)
    for layer in net.layers:
        for arr in (layer.a, layer.b, layer.min_wire, layer.max_wire):
            assert arr.ndim == 1 and arr.size <= 500


def test_networks_are_cached():
    assert build_network("splitter_selection", 64, 5) is build_network("splitter_selection", 64, 5)


def test_invalid_network_arguments():
    with pytest.raises(ValueError, match="Unknown network"):
        build_network("quick", 8, 2)
    with pytest.raises(ValueError, match="k <= n"):
        build_network("splitter_selection", 8, 9)


@pytest.mark.reference
@pytest.mark.skipif(not difftopk_reference.available(), reason="difftopk and torch not installed")
@pytest.mark.parametrize(
    "kind,n,k",
    [
        ("splitter_selection", 16, 5),
        ("splitter_selection", 100, 5),
        ("bitonic", 13, 3),
        ("bitonic", 32, 5),
    ],
)
def test_layouts_match_the_reference(kind, n, k):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        from difftopk import networks as dn

        ref = (
            dn.sparse_splitter_selection_network(n, k)
            if kind == "splitter_selection"
            else dn.sparse_bitonic_network(n)
        )
    net = build_network(kind, n, k)
    assert len(ref) == len(net.layers)
    for (split_a, split_b, comb_min, comb_max, *_), ours in zip(ref, net.comparators()):
        ref_comps = set()
        for row in range(split_a.shape[0]):
            a, b = int(np.argmax(split_a[row])), int(np.argmax(split_b[row]))
            if a == b:
                continue  # a pass-through wire
            lo, hi = int(np.argmax(comb_min[:, row])), int(np.argmax(comb_max[:, row]))
            ref_comps.add((a, b, lo, hi))
        assert set(ours) == ref_comps


def _run_plan_hard(plan, values):
    """Executes an execution plan with exact comparators, in NumPy, on wire-major state."""
    state = np.concatenate([np.zeros((plan.pad,) + values.shape[1:]), values], axis=0)
    for step in plan.steps:
        if isinstance(step, sorting_networks.PermStep):
            state = state[step.index]
        elif isinstance(step, sorting_networks.Compact):
            state = state[step.rows]
        elif isinstance(step, sorting_networks.StrideStep):
            end = step.offset + step.blocks * 2 * step.span
            region = (
                state[step.offset : end]
                .reshape((step.blocks, 2, step.span) + state.shape[1:])
                .copy()
            )
            lo, hi = region[:, 0].copy(), region[:, 1].copy()
            keep = step.keep.reshape(step.keep.shape + (1,) * (state.ndim - 1))
            desc = step.descending.reshape(keep.shape)
            small, large = np.minimum(lo, hi), np.maximum(lo, hi)
            region[:, 0] = np.where(keep, np.where(desc, large, small), lo)
            region[:, 1] = np.where(keep, np.where(desc, small, large), hi)
            state[step.offset : end] = region.reshape((-1,) + state.shape[1:])
        else:
            c = step.count
            lo, hi = state[:c].copy(), state[c : 2 * c].copy()
            state[:c], state[c : 2 * c] = np.minimum(lo, hi), np.maximum(lo, hi)
    return state[plan.top]


@pytest.mark.parametrize("kind", sorting_networks.NETWORKS)
@pytest.mark.parametrize("n,k", [(2, 1), (7, 3), (16, 5), (37, 5), (100, 5), (64, 64)])
def test_execution_plan_computes_what_the_network_computes(kind, n, k, rng):
    plan = sorting_networks.execution_plan(kind, n, k)
    net = sorting_networks.build_network(kind, n, k)
    x = rng.normal(size=(n, 30))
    expected = (
        net.apply_hard(x.T).T[n - 1 : n - 1 - k : -1] if k < n else net.apply_hard(x.T).T[::-1]
    )
    np.testing.assert_array_equal(_run_plan_hard(plan, x), expected)
    # And it ranks: the top k of each column in descending order.
    np.testing.assert_array_equal(_run_plan_hard(plan, x), -np.sort(-x, axis=0)[:k])


@pytest.mark.parametrize("n", [5, 16, 100])
def test_sorting_network_plans_have_no_gathers(n):
    # Bitonic and odd-even layers act at a fixed stride: every layer is a reshape, never a permutation.
    for kind in ("bitonic", "odd_even"):
        plan = sorting_networks.execution_plan(kind, n, 3)
        assert all(isinstance(s, sorting_networks.StrideStep) for s in plan.steps), kind
    # splitter_selection: its first splitter over all lanes is log2(N) stride steps, the sparse rest
    # one permutation of whole rows per layer.
    plan = sorting_networks.execution_plan("splitter_selection", n, 3)
    strides = [s for s in plan.steps if isinstance(s, sorting_networks.StrideStep)]
    assert len(strides) >= int(np.ceil(np.log2(n)))
    compact = [s for s in plan.steps if isinstance(s, sorting_networks.Compact)]
    if n == 100:
        # The sparse layers after the first splitter touch few wires: the state shrinks to those.
        assert len(compact) == 1 and plan.wires < 64
