"""Examples for keras-topk (TensorFlow backend: they use tf.data and tfds).

Scripts (run from the repository root):

- ``python -m examples.compare_losses``: the main job. Trains the same model with
  cross-entropy and each keras-topk loss over several seeds on an embedded
  synthetic benchmark (no download), prints top-1/2/5 accuracy and writes
  ``results.json`` and plots. ``--quick`` for a few minutes' run; also takes
  tfds datasets (``--dataset cifar100``) and embedding files (``--embeddings``).
- ``python -m examples.finetune``: fine-tunes a ``keras.applications`` model on a
  tfds dataset with any loss; resumable (``BackupAndRestore``).
- ``python -m examples.extract_embeddings`` then ``python -m examples.train_head``:
  the paper's ImageNet protocol (a classifier head trained on frozen embeddings).

Every script takes ``--mock-data N`` to run offline on random tfds-shaped data
(``tfds.testing.mock_data``). Shared code: `data` (tfds loading and the tf.data
pipeline), `models` (applications and heads), `loss_factory` (losses from CLI
flags), `training` (compile/fit/callbacks), `reporting` (tables, JSON, plots),
`synthetic` (the benchmark's data).
"""
