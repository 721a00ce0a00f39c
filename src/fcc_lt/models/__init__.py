"""Networks: backbones (CIFAR ResNets, ResNet/ResNeXt), classifier heads (linear, cosine, LWS), the pure
``Network`` (images -> logits, pooled features exposed), the tau-normalised view of a trained network,
and the checkpoint file (what fcc writes; safe reads; weights into a model).

Imports: config, util.
"""

from fcc_lt.models.network import Network, build_network

__all__ = ["Network", "build_network"]
