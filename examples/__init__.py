"""Examples for keras-topk (TensorFlow backend: they use tf.data and tfds).

Start with ``examples/quickstart.py`` (compile and fit, 30 lines). Scripts, run from the repository root:

- ``python -m examples.compare_losses``: the main job, a small replication study of when each top-k loss
  beats cross-entropy (embedded benchmark, or ``--embeddings``/``--dataset`` for your data).
- ``python -m examples.finetune``: fine-tunes a ``keras.applications`` model on a tfds dataset; resumable.
- ``python -m examples.extract_embeddings`` then ``python -m examples.train_head``: the paper's ImageNet
  protocol (a classifier head trained on frozen embeddings).

Modules: `common` (errors, losses from flags, compile/fit/save), `images` (tfds and keras.applications),
`benchmark` (the study's data), `study` (trainer, tuning, resumable cells), `report` (statistics, verdicts,
plots). Outputs go under ``runs/``.
"""

import os

# Set before TensorFlow is imported, so that a CPU machine does not print "E0000 ... cuInit" lines that
# read like failures (the full `tensorflow` wheel logs that one at ERROR level, so 2 is not enough;
# Python exceptions still show); a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The study's NumPy heads multiply small matrices thousands of times, where OpenBLAS's threads cost ~100x
# more than they save; set before NumPy is imported (a user's own setting wins).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
