"""Compile and fit with a top-k loss: python -m examples.quickstart (about a minute on a CPU).

100 classes in 20 superclasses of 5 (examples.benchmark), 40% of the training labels redrawn within
their superclass; a linear head trained with cross-entropy and with two top-k losses.
"""

import keras

import keras_topk
from examples import benchmark

x_train, y_train, x_test, y_test, _ = benchmark.make_task(
    benchmark.Benchmark(noise="superclass", p=0.4), seed=0
)

losses = {
    "cross-entropy": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    "TopKCrossEntropy": keras_topk.losses.TopKCrossEntropy(p_k=(0.2,) * 5, m=16),
    "SmoothTopKSVM": keras_topk.losses.SmoothTopKSVM(k=5, tau=1.0, alpha=1.0),
}
for name, loss in losses.items():
    keras.utils.set_random_seed(0)  # the same initial weights and batch order for each loss
    model = keras.Sequential([keras.Input((x_train.shape[1],)), keras.layers.Dense(100)])  # logits
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=loss,
        metrics=[
            keras_topk.metrics.MultiTopKAccuracy(ks=(1, 5))
        ],  # logs top1_accuracy, top5_accuracy
        jit_compile=True,
    )
    model.fit(x_train, y_train, batch_size=256, epochs=15, verbose=0)
    logs = model.evaluate(x_test, y_test, batch_size=4096, return_dict=True, verbose=0)
    print(
        f"{name:<17} top-1 {100 * logs['top1_accuracy']:.1f}%  top-5 {100 * logs['top5_accuracy']:.1f}%"
    )
