"""Muon: momentum SGD whose update for each conv filter bank is orthogonalised before it is applied.

Orthogonalising the update (replacing G = U S V^T by roughly U V^T) gives every direction of the
filter bank the same step size, which is what lets the CNN reach its accuracy in fewer epochs.
The orthogonalisation is a few Newton-Schulz iterations in bf16: a handful of small matmuls.
"""

from __future__ import annotations

import torch

# Quintic Newton-Schulz coefficients chosen for a steep slope at zero (Keller Jordan's Muon write-up).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """Approximately U V^T for matrix = U S V^T (singular values pushed to ~[0.5, 1.5])."""
    a, b, c = NS_COEFFICIENTS
    x = matrix.bfloat16()
    x = x / (x.norm() + eps)
    transposed = x.size(0) > x.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if transposed else x).float()


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, then an orthogonalised step; each weight is kept at a fixed norm."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.9, nesterov: bool = True):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param.grad)
                buffer = state["momentum_buffer"]
                buffer.mul_(group["momentum"]).add_(param.grad)
                grad = param.grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
                # Fixed weight norm: with BatchNorm after every conv only the direction matters.
                param.mul_(len(param) ** 0.5 / param.norm())
                update = orthogonalize(grad.reshape(len(grad), -1)).view_as(grad)
                param.add_(update, alpha=-group["lr"])
