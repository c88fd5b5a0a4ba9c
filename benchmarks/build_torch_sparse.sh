#!/usr/bin/env bash
# Optional benchmark set-up: build torch-scatter and torch-sparse from source (CPU only) for the
# installed torch, so difftopk runs its sparse path (torch_sparse.spmm) in benchmarks/reference.py.
# Neither package publishes wheels for torch 2.13 on PyPI; the source distributions build against
# the installed torch with a C++ compiler (g++) and take a long time on a small machine: 24 minutes
# with MAX_JOBS=2 on an otherwise idle 2-core machine (torch-scatter 2.1.2, torch-sparse 0.6.18).
#
#   bash benchmarks/build_torch_sparse.sh            # uses $PYTHON or python
#   MAX_JOBS=1 nice -n 19 bash benchmarks/build_torch_sparse.sh   # on a busy machine
#
# Without it the reference benchmark uses difftopk's dense executor and says so in its table.
set -euo pipefail
PYTHON=${PYTHON:-python}
export FORCE_CUDA=0 FORCE_ONLY_CPU=1 MAX_JOBS=${MAX_JOBS:-1}
"$PYTHON" -c "import torch; print('building against torch', torch.__version__)"
# --no-build-isolation: the build must see the installed torch, not a fresh one pip would fetch.
"$PYTHON" -m pip install --no-build-isolation --no-binary torch-scatter,torch-sparse \
    --no-deps "torch-scatter==2.1.2"
"$PYTHON" -m pip install --no-build-isolation --no-binary torch-scatter,torch-sparse \
    --no-deps "torch-sparse==0.6.18"
"$PYTHON" -c "import torch_sparse, torch_scatter; print('torch-sparse', torch_sparse.__version__, 'ok')"
