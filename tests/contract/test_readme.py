"""The snippets of docs/saving-and-serving.md ("Saving, XLA, mixed precision and multi-device") run, in order."""

import os
import re
import subprocess
import sys

import keras
import pytest

from tests.contract.helpers import ROOT

SECTION = "## Saving, XLA, mixed precision and multi-device"


PAGE = os.path.join("docs", "saving-and-serving.md")


def snippets():
    with open(os.path.join(ROOT, PAGE), encoding="utf-8") as f:
        page = f.read()
    start = page.index(SECTION)
    end = page.find("\n## ", start + len(SECTION))
    section = page[start : end if end != -1 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_a_snippet_for_each_topic_and_they_compile():
    code = "\n".join(snippets())
    for needle in (
        "jit_compile=True",
        "load_model",
        "export_with_loss",
        "tf.saved_model.load",
        "mixed_float16",
        "MirroredStrategy",
    ):
        assert needle in code, needle
    compile(code, PAGE, "exec")


# Slow (three XLA compilations, ~30 s): CI runs it in its slow step.
@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the snippets use TensorFlow")
def test_snippets_run_in_order(tmp_path):
    # A fresh process, as a reader's: no logical devices, policies or
    # distribution strategies left behind by other tests.
    script = os.path.join(tmp_path, "page_snippets.py")
    with open(script, "w", encoding="utf-8") as f:
        f.write("\n\n".join(snippets()))
        f.write(
            "\nimport os\nassert os.path.exists('model.keras') and os.path.isdir('with_loss')\n"
            "assert model16.dtype_policy.name == 'mixed_float16'\nprint('the snippets ran')\n"
        )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "the snippets ran" in result.stdout
