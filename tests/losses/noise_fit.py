"""Trains a noised top-k hinge under ``fit(jit_compile=True)`` and prints what it drew, as JSON.

    KERAS_BACKEND=jax python -m tests.losses.noise_fit [a,b,c,long_tail,no_callback]

test_topk_calibrated_hinge.py runs this under each backend. The optimizer's
learning rate is 0, so the scores are the same at every step and a step's
loss changes only through the noise: equal losses at two steps mean frozen
noise.
"""

import json
import sys

import keras
import numpy as np

import keras_topk


def train(seed, callback=True, epochs=3, jit_compile=True, loss_class="noised"):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10)])
    if loss_class == "noised":
        loss = keras_topk.losses.NoisedTopKHinge(k=2, epsilon=1.0, n_samples=2, seed=seed)
    else:
        loss = keras_topk.losses.LongTailTopKHinge(
            list(range(10, 0, -1)), k=2, scale=1.0, epsilon=1.0, n_samples=2, seed=seed
        )
    model.compile(keras.optimizers.SGD(0.0), loss=loss, jit_compile=jit_compile)
    x = np.random.default_rng(1).normal(size=(16, 4)).astype("float32")
    y = np.arange(16) % 10
    callbacks = [keras_topk.callbacks.NoiseCallback()] if callback else []
    history = model.fit(
        x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=callbacks, shuffle=False
    )
    exact = keras_topk.losses.topk_calibrated_hinge(y, model.predict(x, verbose=0), k=2)
    return {
        "losses": [float(v) for v in history.history["loss"]],
        "exact": float(np.mean(keras.ops.convert_to_numpy(exact))),
        "draws": int(keras.ops.convert_to_numpy(loss.noise_state.seed_state)[1]),
        "logs": sorted(history.history),
    }


def main(parts):
    out = {"backend": keras.backend.backend()}
    runs = {
        "a": lambda: train(3),
        "b": lambda: train(3),
        "c": lambda: train(4),
        "long_tail": lambda: train(3, loss_class="long_tail"),
        "no_callback": lambda: train(3, callback=False),
    }
    for part in parts:
        try:
            out[part] = runs[part]()
        except ValueError as error:
            out[f"{part}_error"] = str(error)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1].split(",") if len(sys.argv) > 1 else ["a", "b", "c", "no_callback"]))
