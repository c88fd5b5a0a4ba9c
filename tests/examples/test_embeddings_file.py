"""The main job on a user's embeddings file: bad files are messages, changed files get new cells."""

import json

import numpy as np
import pytest

from examples import common, compare_losses, study

# Small enough that a file the loader wrongly accepts trains in a second or two.
TINY = ["--losses", "ce", "--seeds", "1", "--max-epochs", "2", "--no-progress"]


def good_arrays(rows=60, classes=6, width=5, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(rows, dtype=np.int32) % classes
    y_eval = np.arange(30, dtype=np.int32) % classes
    return {
        "x_train": rng.normal(size=(rows, width)).astype(np.float32) + y[:, None],
        "y_train": y,
        "x_eval": rng.normal(size=(30, width)).astype(np.float32) + y_eval[:, None],
        "y_eval": y_eval,
        "meta": np.array(json.dumps({"num_classes": classes, "model": "M", "dataset": "D"})),
    }


def with_(**changes):
    arrays = good_arrays()
    arrays.update(changes)
    return arrays


def _nan_features():
    arrays = good_arrays()
    arrays["x_train"][7, 2] = np.nan
    return arrays


def _label(key, index, value):
    arrays = good_arrays()
    arrays[key] = arrays[key].astype(np.int64)
    arrays[key][index] = value
    return arrays


BAD_FILES = {
    # case: (arrays to save with np.savez, or a callable writing the path; a word the message must hold)
    "fractional labels": (lambda: with_(y_train=good_arrays()["y_train"] + 0.5), "whole number"),
    "one label fewer than rows": (
        lambda: with_(y_train=good_arrays()["y_train"][:-1]),
        "59 labels for 60",
    ),
    "string labels": (lambda: with_(y_train=good_arrays()["y_train"].astype(str)), "dtype"),
    "negative label": (lambda: _label("y_train", 3, -1), "negative"),
    "label out of range": (lambda: _label("y_eval", 2, 6), "out of range"),
    "NaN features": (_nan_features, "non-finite"),
    "1-D features": (lambda: with_(x_train=good_arrays()["x_train"][:, 0]), "2-D"),
    "3-D features": (lambda: with_(x_train=good_arrays()["x_train"].reshape(60, 5, 1)), "2-D"),
    "widths differ": (lambda: with_(x_eval=good_arrays()["x_eval"][:, :4]), "same width"),
    "meta not JSON": (lambda: with_(meta=np.array("{num_classes: 6")), "JSON"),
    "empty split": (
        lambda: with_(x_eval=np.zeros((0, 5), np.float32), y_eval=np.zeros(0, np.int32)),
        "empty",
    ),
    "one class": (lambda: with_(y_train=np.zeros(60, np.int32)), "one class"),
    "object array": (
        lambda: with_(y_train=np.array(list(range(60)), dtype=object) % 6),
        "object",
    ),
    "text file": ("x_train,y_train\n1,2\n", "not an .npz archive"),
    "empty file": ("", "empty"),
    "directory": (None, "directory"),
}


def write_bad(path, case):
    make, _ = BAD_FILES[case]
    if make is None:
        path.mkdir()
    elif isinstance(make, str):
        path.write_text(make)
    else:
        np.savez(path, **make())


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_embeddings_file_is_one_error_line_and_status_2(tmp_path, capsys, case):
    path = tmp_path / "emb.npz"
    write_bad(path, case)
    with pytest.raises(SystemExit) as exit_info:
        common.run(
            compare_losses.main,
            ["--embeddings", str(path), *TINY, "--output", str(tmp_path / "out")],
        )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: --embeddings "), err
    assert BAD_FILES[case][1] in lines[0], lines[0]


def test_the_loader_accepts_whole_float_labels_and_standardises(tmp_path):
    arrays = good_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float64)  # 3.0 is class 3
    np.savez(tmp_path / "e.npz", **arrays)
    (x, y, xt, yt, n), meta = compare_losses.load_user_embeddings(str(tmp_path / "e.npz"))
    assert n == 6 and y.dtype == np.int32 and y.tolist() == good_arrays()["y_train"].tolist()
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-5)
    raw = good_arrays()["x_train"].astype(np.float64)
    np.testing.assert_allclose(
        xt, (good_arrays()["x_eval"] - raw.mean(0)) / (raw.std(0) + 1e-6), rtol=1e-4, atol=1e-5
    )
    assert meta["model"] == "M" and len(meta["sha256"]) == 64


def test_a_rewritten_embeddings_file_gets_new_cells(tmp_path, monkeypatch):
    path = tmp_path / "emb.npz"
    np.savez(path, **good_arrays())
    flags = ["--embeddings", str(path), *TINY]
    first = compare_losses.main([*flags, "--output", str(tmp_path / "out")])

    arrays = good_arrays()
    arrays["y_train"] = np.random.default_rng(5).permutation(arrays["y_train"])  # shuffled labels
    np.savez(path, **arrays)
    real_fit, calls = study.FeatureTrainer.fit, []

    def fit(self, *args, **kwargs):
        calls.append(args[0])
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(study.FeatureTrainer, "fit", fit)
    rerun = compare_losses.main([*flags, "--output", str(tmp_path / "out")])
    reran = len(calls)
    calls.clear()
    fresh = compare_losses.main([*flags, "--output", str(tmp_path / "fresh")])
    assert reran == len(calls) > 0  # every cell trained again, none taken from the first file
    assert rerun["per_seed"] == fresh["per_seed"] and rerun["per_seed"] != first["per_seed"]
