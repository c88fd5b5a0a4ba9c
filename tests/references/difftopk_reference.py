"""Builds the reference TopKCrossEntropyLoss of `difftopk` (PyTorch) on this machine.

Its sparse networks (bitonic, splitter_selection) need torch-sparse, which does
not install here; the reference's own dense executor evaluates the same networks
from the first four (dense) matrices of each sparse layer, with the same result.
Used by the optional parity tests and by benchmarks/; never by the package.
"""

import contextlib
import io


def available():
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import difftopk  # noqa: F401
            import torch  # noqa: F401
    except ImportError:
        return False
    return True


def reference_loss(n, p_k, method, inverse_temperature, distribution, art_lambda, m, top1_mode):
    """The reference loss module, with sparse networks run by the dense executor."""
    with contextlib.redirect_stdout(io.StringIO()):
        import torch
        from difftopk import losses as dl
        from difftopk import networks as dn
        from difftopk.difftopk import DiffTopkNet

        size = m if m is not None else n
        k = len(p_k)
        if method in ("bitonic", "splitter_selection"):
            loss = dl.TopKCrossEntropyLoss(
                "odd_even",
                inverse_temperature,
                list(p_k),
                n,
                m=m,
                distribution=distribution,
                art_lambda=art_lambda,
                top1_mode=top1_mode,
            )
            if method == "bitonic":
                layers = dn.sparse_bitonic_network(size)
            else:
                layers = dn.sparse_splitter_selection_network(size, k)
            net = DiffTopkNet(
                "odd_even",
                size,
                k,
                sparse=False,
                steepness=inverse_temperature,
                art_lambda=art_lambda,
                distribution=distribution,
            )
            net.sorting_network = [
                [torch.from_numpy(a).float() for a in layer[:4]] for layer in layers
            ]
            loss.top_k_net = net
            loss.diffsort_method = method
        else:
            loss = dl.TopKCrossEntropyLoss(
                method,
                inverse_temperature,
                list(p_k),
                n,
                m=m,
                distribution=distribution,
                art_lambda=art_lambda,
                top1_mode=top1_mode,
            )
    return loss


def value_and_grad(loss, scores, labels, dtype="float32"):
    """Reference loss value and d loss / d scores, as NumPy arrays."""
    import torch

    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    x = torch.tensor(scores, dtype=torch_dtype, requires_grad=True)
    value = loss(x, torch.tensor(labels, dtype=torch.long))
    value.backward()
    return value.detach().numpy(), x.grad.numpy()
