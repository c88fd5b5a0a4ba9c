"""LapSum forms no (b, n, n) or (b, n, layers) tensor: the largest intermediate of a
TopKCrossEntropy(method="lapsum") training step at n = 10,450, under JAX.

The step (value and gradient with respect to the scores) is traced with
``jax.make_jaxpr`` in a subprocess (the backend is chosen before Keras is
imported); every equation's outputs, inside sub-jaxprs too, are measured.
NeuralSort's dense (b, n, n) path is traced the same way as a check that the
walk sees such a tensor.
"""

import json
import subprocess
import sys

import pytest

pytest.importorskip("jax")

SCRIPT = r"""
import json, os
os.environ["KERAS_BACKEND"] = "jax"
import jax, jax.numpy as jnp, numpy as np
import keras_topk

def largest(closed):
    best = (0, ())
    def walk(jaxpr):
        nonlocal best
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                shape = tuple(getattr(var.aval, "shape", ()))
                size = int(np.prod(shape)) if shape else 1
                best = max(best, (size, shape))
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    if hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                        walk(sub.jaxpr)
                    elif hasattr(sub, "eqns"):
                        walk(sub)
    walk(closed.jaxpr)
    return best

def step_shape(loss, b, n, labels):
    x = jnp.zeros((b, n), jnp.float32)
    fn = jax.value_and_grad(lambda s: loss(labels, s))
    return largest(jax.make_jaxpr(fn)(x))

out = {}
b, n = 4, 10450
y = jnp.arange(b) % n
for name, loss in [
    ("lapsum", keras_topk.losses.TopKCrossEntropy(method="lapsum", m=None)),
    ("lapsum_dense", keras_topk.losses.TopKCrossEntropy(method="lapsum", m=None)),
]:
    labels = jax.nn.one_hot(y, n) if name == "lapsum_dense" else y
    out[name] = step_shape(loss, b, n, labels)
out["neuralsort_200"] = step_shape(
    keras_topk.losses.TopKCrossEntropy(method="neuralsort", m=None), b, 200, jnp.arange(b)
)
print(json.dumps(out))
"""


def test_no_quadratic_tensor_at_imagenet21k_size():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    shapes = json.loads(result.stdout.strip().splitlines()[-1])
    b, n, num_ranks = 4, 10450, 5
    # Sparse labels: nothing larger than one (b, n) tensor.
    size, shape = shapes["lapsum"]
    assert size <= b * n, shape
    # Dense label rows take the (b, n, K) rank matrix, still linear in n.
    size, shape = shapes["lapsum_dense"]
    assert size <= b * n * num_ranks, shape
    # The walk does see a (b, n, n) tensor where one is formed.
    size, shape = shapes["neuralsort_200"]
    assert size >= b * 200 * 200, shape
