"""Sorting and selection networks as static index arrays.

A network acts on ``n`` wires; wire ``n - 1`` receives the largest value. It is
a list of layers, each a set of disjoint comparators. A comparator reads wires
``a < b`` (the relaxation's ``alpha = f(x_b - x_a)`` is computed from them in
that order) and writes the minimum to ``min_wire`` and the maximum to
``max_wire``; ``{min_wire, max_wire} == {a, b}``. Bitonic networks have
comparators that write the maximum to the lower wire.

The layouts are those of the reference implementation (``difftopk``), so the
relaxation of each network matches it number for number: which comparators
share a layer changes the relaxed result, not only the hard one.

Networks are built once per ``(kind, n, k)`` and cached; they hold only index
arrays of length ``n`` per layer, never ``n x n`` matrices.

``execution_plan`` turns a network into steps that run without per-element
gathers: the wires are padded at the front to ``N`` (a power of two for
bitonic and splitter_selection) so that a layer whose comparators all span the
same stride ``s`` and sit in aligned blocks of ``2 s`` wires is a reshape into
``(blocks, 2, s)``, an elementwise comparator and a reshape back ("stride"
steps; comparators missing from a block are masked to the identity). The other
layers (splitter_selection's later, sparse ones) keep the wires in a permuted
order with the layer's ``a`` wires first and its ``b`` wires next, so each costs
one permutation of whole wire rows ("perm" then "pairs" steps).
"""

import dataclasses
import functools
import math
from typing import Any

import numpy as np

NETWORKS = ("odd_even", "bitonic", "splitter_selection")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of comparators: int32 arrays of length ``c``.

    Comparator ``i`` compares wires ``a[i] < b[i]`` and writes the smaller
    value to ``min_wire[i]``, the larger to ``max_wire[i]``.
    """

    a: np.ndarray
    b: np.ndarray
    min_wire: np.ndarray
    max_wire: np.ndarray

    @property
    def num_comparators(self):
        return int(self.a.shape[0])


@dataclasses.dataclass(frozen=True)
class Network:
    kind: str
    n: int
    k: int
    layers: tuple

    @property
    def num_comparators(self):
        return sum(layer.num_comparators for layer in self.layers)

    def comparators(self):
        """The network as a list of layers of ``(a, b, min_wire, max_wire)`` tuples."""
        return [
            list(zip(l.a.tolist(), l.b.tolist(), l.min_wire.tolist(), l.max_wire.tolist()))
            for l in self.layers
        ]

    def apply_hard(self, values):
        """Runs the network with exact comparators on the last axis of ``values`` (NumPy)."""
        x = np.array(values, copy=True)
        for layer in self.layers:
            xa, xb = x[..., layer.a], x[..., layer.b]
            low, high = np.minimum(xa, xb), np.maximum(xa, xb)
            x[..., layer.min_wire] = low
            x[..., layer.max_wire] = high
        return x


def _make_layer(n, comparators):
    """Builds a Layer from ``(a, b, min_wire, max_wire)`` tuples."""
    c = len(comparators)
    arr = np.array(comparators, dtype=np.int32).reshape(c, 4)
    a, b, min_wire, max_wire = (arr[:, i].copy() for i in range(4))
    seen: set[int] = set()
    for ai, bi, lo, hi in comparators:
        if ai >= bi or {lo, hi} != {ai, bi} or ai in seen or bi in seen or bi >= n:
            raise ValueError(f"Invalid comparator {(ai, bi, lo, hi)} in layer {comparators}.")
        seen.update((ai, bi))
    return Layer(a, b, min_wire, max_wire)


def _odd_even_layers(n):
    layers = []
    for layer in range(n):
        start = layer % 2
        layers.append([(i, i + 1, i, i + 1) for i in range(start, n - 1, 2)])
    return layers


def _bitonic_layers(n):
    # A bitonic sorter on the next power of two; the padding wires sit below wire 0
    # and any comparator touching one is dropped, exactly as the reference does.
    blocks = max(1, math.ceil(math.log2(n))) if n > 1 else 0
    size = 2**blocks
    pad = size - n
    layers = []
    for block in range(blocks):
        for sub in range(block + 1):
            span = 2 ** (block - sub)
            comps = []
            for start in range(0, size, 2 * span):
                for j in range(span):
                    lo, hi = start + j, start + j + span
                    if lo < pad or hi < pad:
                        continue
                    descending = (lo // 2 ** (block + 1)) % 2 == 1
                    a, b = lo - pad, hi - pad
                    comps.append((a, b, b, a) if descending else (a, b, a, b))
            layers.append(comps)
    return layers


def _splitter_cascade(lanes):
    """Layers of a splitter over ``lanes``: after it, each lane holds at least its rank bound."""
    count = len(lanes)
    if count < 2:
        return []
    depth = math.ceil(math.log2(count))
    layers = []
    for i in range(depth):
        span = 2 ** (depth - i - 1)
        layers.append(
            [
                (lanes[j], lanes[j + span])
                for offset in range(0, count, 2 * span)
                for j in range(offset, min(offset + span, count - span))
            ]
        )
    return layers


def _splitter_selection_layers(n, k):
    # Selection network of Petersen et al. (appendix): lanes grouped by a lower
    # bound on their rank (from the top) are split by splitter cascades until the
    # top k ranks are isolated. Built top-first, then mirrored so that the
    # largest value lands on wire n - 1.
    rank_gain = [2 ** bin(i).count("1") - 1 for i in range(n)]
    min_rank = [0] * n
    next_layer = [0] * n
    layers: list[list[tuple[int, int]]] = []

    def split_rank(rank):
        selected = [lane for lane, r in enumerate(min_rank) if r == rank]
        if len(selected) < 2:
            return False
        cascade = _splitter_cascade(selected)
        offset = max(next_layer[lane] for lane in selected)
        layers.extend([] for _ in range(offset + len(cascade) - len(layers)))
        for i, comps in enumerate(cascade):
            layers[offset + i].extend(comps)
        for j, lane in enumerate(selected):
            min_rank[lane] += rank_gain[j]
            next_layer[lane] = offset + len(cascade)
        return True

    rank_end = -1
    added = True
    while added:
        added = False
        for rank in range(k - 1, rank_end, -1):
            added |= split_rank(rank)
        rank_end += 1
    return [[(n - b - 1, n - a - 1, n - b - 1, n - a - 1) for a, b in comps] for comps in layers]


@functools.lru_cache(maxsize=64)
def build_network(kind, n, k=None):
    """Returns the ``kind`` network on ``n`` wires (selection of the top ``k`` for splitter_selection).

    Args:
        kind: "odd_even" (odd-even transposition, n layers), "bitonic" (any n,
            padded to a power of two) or "splitter_selection" (places only the
            top ``k`` correctly, with far fewer comparators).
        n: number of wires (classes).
        k: number of top positions that must be correct. Required for
            splitter_selection; recorded for the others.
    """
    if kind not in NETWORKS:
        raise ValueError(f"Unknown network {kind!r}; expected one of {list(NETWORKS)}.")
    if n < 1:
        raise ValueError(f"A network needs at least one wire, got n={n}.")
    if kind == "odd_even":
        comps = _odd_even_layers(n)
    elif kind == "bitonic":
        comps = _bitonic_layers(n)
    else:
        if k is None or not 1 <= k <= n:
            raise ValueError(f"splitter_selection needs 1 <= k <= n, got k={k}, n={n}.")
        comps = _splitter_selection_layers(n, k)
    layers = tuple(_make_layer(n, c) for c in comps)
    return Network(kind, n, k if k is not None else n, layers)


@dataclasses.dataclass(frozen=True)
class StrideStep:
    """Comparators on wires ``offset + 2 s i + j`` and ``+ s`` (``i < blocks``, ``j < s``) of the state.

    ``keep[i, j]`` is False where the block has no comparator (identity);
    ``descending[i, j]`` is True where the comparator writes the maximum to its
    lower wire.
    """

    offset: int
    blocks: int
    span: int
    keep: np.ndarray
    descending: np.ndarray


@dataclasses.dataclass(frozen=True)
class PermStep:
    """Reorders the state's wire rows: ``new = old[index]``; ``inverse`` undoes it."""

    index: np.ndarray
    inverse: np.ndarray


@dataclasses.dataclass(frozen=True)
class PairsStep:
    """``c`` comparators on state rows ``[0, c)`` (their ``a`` wires) and ``[c, 2c)`` (``b`` wires).

    Afterwards rows ``[0, c)`` hold the soft minima and ``[c, 2c)`` the soft maxima.
    """

    count: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """Steps of a network on state rows: ``pad`` zero rows, then the ``n`` inputs.

    ``wires``: the number of state rows at the end (fewer than ``n + pad``
    after a Compact step). ``top[j]``: the state row that holds rank ``j``
    (wire ``n - 1 - j``) at the end.
    """

    n: int
    wires: int
    pad: int
    steps: tuple
    top: np.ndarray


def _stride_step(layer, pad, wires):
    """The layer as a StrideStep on the padded state, or None if it is not one."""
    a, b = layer.a + pad, layer.b + pad
    spans = np.unique(b - a)
    if spans.size != 1:
        return None
    span = int(spans[0])
    # Blocks aligned at row 0 (bitonic, splitter), else at the first comparator (odd-even's odd layers).
    for offset in (0, int(a.min()) % (2 * span)):
        blocks = (wires - offset) // (2 * span)
        if np.all((a - offset) % (2 * span) < span) and np.all(b < offset + blocks * 2 * span):
            break
    else:
        return None
    keep = np.zeros((blocks, span), dtype=bool)
    descending = np.zeros((blocks, span), dtype=bool)
    i, j = (a - offset) // (2 * span), (a - offset) % (2 * span)
    keep[i, j] = True
    descending[i, j] = layer.min_wire != layer.a
    return StrideStep(offset, blocks, span, keep, descending)


def _permutation(index):
    index = np.asarray(index, dtype=np.int32)
    inverse = np.empty_like(index)
    inverse[index] = np.arange(index.size, dtype=np.int32)
    return PermStep(index, inverse)


@dataclasses.dataclass(frozen=True)
class Compact:
    """Keeps the state rows ``rows`` (in that order) and drops the others, which no later step reads.

    Its transpose puts the kept rows back among zero rows: ``full = concat(kept, [0])[expand]``.
    """

    rows: np.ndarray
    expand: np.ndarray


@functools.lru_cache(maxsize=64)
def execution_plan(kind, n, k):
    """The gather-free steps of ``build_network(kind, n, k)`` (see the module docstring), for its top ``k``.

    After the last stride step, the state keeps only the wires that the
    remaining (sparse) layers touch and the top ``k`` output wires: a selection
    network's later layers refine the few wires still in the running (28 of
    128 for n = 100, k = 5), so their permutations need not move the others.
    """
    network = build_network(kind, n, k)
    layers = [layer for layer in network.layers if layer.num_comparators]
    pad = 0
    if network.kind in ("bitonic", "splitter_selection") and n > 1:
        pad = 2 ** math.ceil(math.log2(n)) - n
    wires = n + pad
    top_wires = np.arange(n - 1, n - 1 - k, -1) + pad
    # First pass: which layers run as stride steps. A stride step needs the natural order and costs
    # O(wires); a permutation plus pairs costs O(wires) copies and O(c) maths: take the stride step
    # when the order is natural or the layer is not too sparse.
    strided, natural = [], True
    for layer in layers:
        step = _stride_step(layer, pad, wires)
        use = step is not None and (natural or layer.num_comparators * 4 >= wires)
        strided.append(step if use else None)
        natural = use
    tail_start = max([i + 1 for i, st in enumerate(strided) if st is not None], default=0)
    order = np.arange(wires)  # order[r]: the wire (padded numbering) held by state row r
    steps: list[Any] = []
    for i, (layer, step) in enumerate(zip(layers, strided)):
        if i == tail_start:
            live = set(top_wires.tolist())
            for later in layers[i:]:
                live |= set((later.a + pad).tolist()) | set((later.b + pad).tolist())
            if len(live) < order.size:
                position = np.full(wires, -1)
                position[order] = np.arange(order.size)
                rows = np.array(sorted(position[w] for w in live), dtype=np.int32)
                expand = np.full(order.size, rows.size, dtype=np.int32)
                expand[rows] = np.arange(rows.size, dtype=np.int32)
                steps.append(Compact(rows, expand))
                order = order[rows]
        if step is not None:
            if not np.array_equal(order, np.arange(wires)):
                steps.append(_permutation(np.argsort(order)))
                order = np.arange(wires)
            steps.append(step)
            continue
        a, b = layer.a + pad, layer.b + pad
        touched = np.concatenate([a, b])
        rest = order[~np.isin(order, touched)]
        position = np.full(wires, -1)
        position[order] = np.arange(order.size)
        steps.append(_permutation(position[np.concatenate([touched, rest])]))
        steps.append(PairsStep(layer.num_comparators))
        order = np.concatenate([layer.min_wire + pad, layer.max_wire + pad, rest])
    position = np.full(wires, -1)
    position[order] = np.arange(order.size)
    top = position[top_wires].astype(np.int32)
    return Plan(n, int(order.size), pad, tuple(steps), top)
