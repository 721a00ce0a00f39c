"""Backbones, classifier heads and the network that composes them with FCC."""

from fcc.models.network import Network, build_network

__all__ = ["Network", "build_network"]
