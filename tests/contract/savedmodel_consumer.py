"""A SavedModel consumer that has no keras_topk: loads artifacts, calls their endpoints.

Run as a script, in a fresh process:

    python tests/contract/savedmodel_consumer.py INPUTS.npz OUTPUTS.npz DIR [DIR ...]

INPUTS.npz holds ``x``, ``sample_weight`` and, for each DIR, labels
``"<i>/y"`` (the i-th DIR's label format). For each DIR the
outputs hold ``"<i>/serve"`` and, where the artifact has them,
``"<i>/loss"``, ``"<i>/weighted_loss"``, ``"<i>/top_k_values"`` and
``"<i>/top_k_indices"``. Importing keras_topk is made impossible first, so
the SavedModels must be self-contained.
"""

import importlib.abc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _NoKerasTopK(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "keras_topk" or name.startswith("keras_topk."):
            raise ImportError(f"the SavedModel consumer must not import {name}")
        return None


def main(inputs_path, outputs_path, directories):
    sys.meta_path.insert(0, _NoKerasTopK())
    import numpy as np
    import tensorflow as tf

    inputs = np.load(inputs_path)
    x = tf.constant(inputs["x"])
    sample_weight = tf.constant(inputs["sample_weight"])
    outputs = {}
    for i, directory in enumerate(directories):
        artifact = tf.saved_model.load(directory)
        y = tf.constant(inputs[f"{i}/y"])
        outputs[f"{i}/serve"] = artifact.serve(x).numpy()
        # The signatures (what TF Serving calls) must agree with the functions.
        (signature_output,) = artifact.signatures["serving_default"](x).values()
        np.testing.assert_array_equal(signature_output.numpy(), outputs[f"{i}/serve"])
        if hasattr(artifact, "loss"):
            outputs[f"{i}/loss"] = artifact.loss(y, x).numpy()
            outputs[f"{i}/weighted_loss"] = artifact.weighted_loss(y, x, sample_weight).numpy()
            top = artifact.top_k(x)
            outputs[f"{i}/top_k_values"] = top["values"].numpy()
            outputs[f"{i}/top_k_indices"] = top["indices"].numpy()
            signed = artifact.signatures["loss"](y_true=y, x=x)
            np.testing.assert_array_equal(next(iter(signed.values())).numpy(), outputs[f"{i}/loss"])
    assert "keras_topk" not in sys.modules
    np.savez(outputs_path, **outputs)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
