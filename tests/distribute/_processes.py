"""Run recipe scripts in subprocesses with a deadline, so that a hung worker cannot hang CI."""

import importlib
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RECIPES = ROOT / "docs" / "recipes"


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recipe(name):
    """Imports ``docs/recipes/<name>.py`` for its helpers, leaving this process's environment as it was.

    A recipe is a script: on import it sets ``KERAS_BACKEND`` with ``setdefault``. Left in
    ``os.environ``, that would pick the backend of every subprocess a later test starts (the
    JAX recipe made ``examples.finetune`` refuse to run under the TensorFlow backend).
    """
    saved = os.environ.get("KERAS_BACKEND")
    try:
        return importlib.import_module(f"docs.recipes.{name}")
    finally:
        if saved is None:
            os.environ.pop("KERAS_BACKEND", None)
        else:
            os.environ["KERAS_BACKEND"] = saved


def environment(**extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT), **extra)
    return env


def start(script, args, env):
    # A session of its own, so that a timeout kills the process and its children.
    return subprocess.Popen(
        [sys.executable, str(RECIPES / script), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill(process):
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def wait_all(processes, timeout):
    """Waits for every process (same deadline); fails the test, killing all, on timeout or error."""
    import time

    deadline = time.monotonic() + timeout
    outputs = []
    try:
        for process in processes:
            remaining = max(deadline - time.monotonic(), 1.0)
            try:
                out, _ = process.communicate(timeout=remaining)
            except subprocess.TimeoutExpired:
                for p in processes:
                    kill(p)
                pytest.fail(f"{process.args} did not finish within {timeout} s")
            outputs.append(out)
    finally:
        for p in processes:
            kill(p)
    for process, out in zip(processes, outputs):
        if process.returncode != 0:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{out[-4000:]}")
    return outputs
