"""The committed reference cases (`tests/references/cases/*.npz`), as their generators wrote them."""

import json
import pathlib

import numpy as np

CASES = pathlib.Path(__file__).resolve().parent / "cases"


def load(name):
    """``(meta, cases)`` of ``cases/<name>.npz``: its JSON metadata and one dict of arrays per case."""
    data = np.load(CASES / f"{name}.npz")
    meta = json.loads(str(data["meta"]))
    results = []
    for i in range(len(meta["cases"])):
        prefix = f"{i}/"
        results.append(
            {key[len(prefix) :]: data[key] for key in data.files if key.startswith(prefix)}
        )
    return meta, results
