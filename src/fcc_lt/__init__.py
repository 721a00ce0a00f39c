"""fcc-lt: Feature Clusters Compression (CVPR 2023) and the long-tail bag of tricks, in plain PyTorch.

The Python API (documented in docs/api.md)::

    import fcc_lt
    model = fcc_lt.load("runs/cifar10_lt/ce_fcc_if100")    # a run directory that `fcc train` wrote
    print(model.predict("photo.png"))                       # its top class and probability

``load``, ``predict``, ``train``, ``evaluate`` and ``export`` are imported on first use, so ``import fcc_lt``
(and ``fcc --help``) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = ["Classifier", "ExportResult", "Prediction", "TrainResult", "__version__", "evaluate", "export", "load",
           "predict", "train"]

_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from fcc_lt.engine.api import (
        Classifier,
        ExportResult,
        Prediction,
        TrainResult,
        evaluate,
        export,
        load,
        predict,
        train,
    )


def __getattr__(name: str) -> Any:
    """The API names, imported from fcc_lt.engine.api when first asked for (PEP 562)."""
    if name in _API:
        from fcc_lt.engine import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fcc_lt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
