"""Helpers shared by the contract tests: the repository's root, and a process without keras_topk."""

import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONSUMER = os.path.join(ROOT, "tests", "contract", "savedmodel_consumer.py")


def run_consumer(inputs, directories, tmp_path):
    """Outputs of the endpoints of ``directories``, computed in a process without keras_topk."""
    inputs_path = os.path.join(tmp_path, "consumer_inputs.npz")
    outputs_path = os.path.join(tmp_path, "consumer_outputs.npz")
    np.savez(inputs_path, **inputs)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, CONSUMER, inputs_path, outputs_path, *directories],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return dict(np.load(outputs_path))
