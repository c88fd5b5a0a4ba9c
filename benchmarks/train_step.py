"""One optimizer step of a whole model with each loss, against the same step with cross-entropy.

Two settings: a Keras Applications ResNet50 (random weights, 224 px, batch 32,
1000 logits) trained end to end, and the paper's ImageNet head (frozen
2048-d embeddings -> Dense(1000), batch 512). Each loss gets its own copy of
the model (same initial weights) compiled with that loss; one round runs one
``train_on_batch`` of every copy, so load changes hit all of them alike.

A ResNet50 step takes tens of seconds on 2 cores, so a few rounds cannot
resolve a difference of a few milliseconds: each row also reports the loss's
own extra cost (its forward+backward at the model's batch size and number of
classes minus CE's, timed as in the loss suite) as a share of the CE step.
"""

import keras
import numpy as np

from benchmarks import cases as grid
from benchmarks import timing

LOSSES = {
    "cross_entropy": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    "topk_cross_entropy": lambda: grid.topk_ce("train", 0, 1000).build(),
    "smooth_topk_svm": lambda: grid.smooth_svm("train", 0, 1000, k=5).build(),
    "topk_transition": lambda: grid.Case(
        "train", "topk_transition", (("k", 5), ("weight", 0.5), ("group", "label")), 0, 1000
    ).build(),
}
LABELS = {
    "cross_entropy": "softmax CE",
    "topk_cross_entropy": "TopKCrossEntropy splitter_selection, m=16, K=5",
    "smooth_topk_svm": "SmoothTopKSVM k=5, tau=1.0",
    "topk_transition": "TopKTransitionLoss k=5, label group",
}


def settings(quick=False):
    """(name, model builder, batch, input shape, classes, losses, warm-up steps)."""
    if quick:

        def small():
            return keras.Sequential(
                [
                    keras.Input((32, 32, 3)),
                    keras.layers.Conv2D(8, 3, activation="relu"),
                    keras.layers.GlobalAveragePooling2D(),
                    keras.layers.Dense(40),
                ]
            )

        return [("small_cnn", small, 8, (32, 32, 3), 40, ("cross_entropy", "smooth_topk_svm"), 2)]

    def resnet50():
        return keras.applications.ResNet50(
            weights=None, input_shape=(224, 224, 3), classes=1000, classifier_activation=None
        )

    def head():
        return keras.Sequential([keras.Input((2048,)), keras.layers.Dense(1000)])

    return [
        (
            "resnet50_224px",
            resnet50,
            32,
            (224, 224, 3),
            1000,
            ("cross_entropy", "topk_cross_entropy", "smooth_topk_svm"),
            1,
        ),
        ("imagenet_head_2048_to_1000", head, 512, (2048,), 1000, tuple(LOSSES), 2),
    ]


def _loss(name, classes):
    if classes == 1000:
        return LOSSES[name]()
    # The quick setting's smaller models: same losses, fitted to the classes.
    if name == "smooth_topk_svm":
        return grid.smooth_svm("train", 0, classes, k=3).build()
    return LOSSES[name]()


def _loss_alone(losses, batch, classes, xla):
    """Forward+backward of each loss alone on logits of the model's shape, interleaved."""
    scores, labels = timing.make_inputs(batch, classes)
    x = timing.to_device(scores)
    steps = {loss: timing.loss_step(_loss(loss, classes), labels, xla) for loss in losses}
    return timing.lower_quartiles(
        {loss: (lambda s=s: timing.block(s(x))) for loss, s in steps.items()},
        calls_per_round=10,
        budget_s=20.0,
    )


def run(quick=False, repeats=5, xla=True, log=print):
    rows = []
    for name, build, batch, shape, classes, losses, warmups in settings(quick):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(batch,) + shape).astype("float32")
        y = rng.integers(0, classes, size=batch).astype("int32")
        template = build()
        weights = template.get_weights()
        models = {}
        for loss in losses:
            model = keras.models.clone_model(template)
            model.set_weights(weights)
            model.compile(
                optimizer=keras.optimizers.SGD(0.01),
                loss=_loss(loss, classes),
                jit_compile=bool(xla),
            )
            models[loss] = model
        result = timing.lower_quartiles(
            {loss: (lambda m=m: m.train_on_batch(x, y)) for loss, m in models.items()},
            calls_per_round=repeats,
            rounds=1,
            warmups=warmups,
            budget_s=240.0,
            min_calls=3,
        )
        ce = result["cross_entropy"]["p25_ms"]
        alone = _loss_alone(losses, batch, classes, xla)
        for loss in losses:
            ms = result[loss]["p25_ms"]
            extra = alone[loss]["p25_ms"] - alone["cross_entropy"]["p25_ms"]
            rows.append(
                {
                    "setting": name,
                    "batch": batch,
                    "input_shape": list(shape),
                    "classes": classes,
                    "loss": loss,
                    "label": LABELS[loss] if classes == 1000 else f"{loss} (quick)",
                    "xla": xla,
                    "step_ms": ms,
                    "ce_step_ms": ce,
                    "ratio_to_ce": ms / ce,
                    "overhead_percent": 100.0 * (ms / ce - 1.0),
                    "loss_alone_ms": alone[loss]["p25_ms"],
                    "ce_alone_ms": alone["cross_entropy"]["p25_ms"],
                    "loss_extra_percent_of_ce_step": 100.0 * extra / ce,
                    "timing": result[loss],
                }
            )
            log(
                f"  {name} {rows[-1]['label']}: {ms:.1f} ms/step, CE {ce:.1f} ms ({100 * (ms / ce - 1):+.1f}%); "
                f"the loss alone {extra:+.2f} ms vs CE = {100 * extra / ce:+.3f}% of the step"
            )
        del models, template
        keras.backend.clear_session()
    return {"rows": rows}
