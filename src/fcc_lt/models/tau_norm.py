"""The tau-normalised view of a trained network (Kang et al., "Decoupling representation and classifier").

tau-normalisation evaluates with class weights W_c / ||W_c||^tau (bias kept): tau = 0 is the plain
classifier, tau = 1 gives every class weight unit norm. The checkpoint is never changed; evaluation
runs the backbone as usual and applies a normalised copy of the head. Choosing tau on a validation split
is fcc_lt.evaluation.tau_sweep.
"""

from __future__ import annotations

from torch import Tensor, nn

from fcc_lt.models.heads import tau_normalize
from fcc_lt.models.network import unwrap_ddp


class TauNormalized(nn.Module):
    """Evaluation view of a network with its head replaced by a tau-normalised copy (weights shared)."""

    def __init__(self, network: nn.Module, tau: float) -> None:
        super().__init__()
        self.network = network
        self.head = tau_normalize(network.head, tau)
        self.tau = tau
        self.train(network.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.network.features(x))


def tau_normalized_network(model: nn.Module, tau: float) -> TauNormalized:
    """``model`` (a Network, possibly DDP-wrapped) evaluated with a tau-normalised head."""
    return TauNormalized(unwrap_ddp(model), tau)


def eval_view(network: nn.Module, tau: float | None) -> nn.Module:
    """What evaluation runs: the network itself, or with its head tau-normalised when ``tau`` is set
    (``eval.tau_norm``). One function, so eval.json, `fcc eval` and `fcc predict` agree."""
    return network if tau is None else tau_normalized_network(network, tau)
