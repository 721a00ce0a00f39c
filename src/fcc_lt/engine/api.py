"""The Python API: the public functions of ``fcc_lt`` (``fcc_lt.load``, ``fcc_lt.train``, ...).

It sits in ``engine``, the lowest block that sees both the trainer and evaluation; ``fcc_lt/__init__.py``
re-exports its names lazily.

Each is a thin call into the block that does the work, the same code the ``fcc`` commands run:
``load`` / ``predict`` -> ``evaluation.inference`` (through the one run loader), ``train`` ->
``engine.trainer.Trainer``, ``evaluate`` -> ``evaluation.evaluate``, ``export`` -> ``evaluation.export``.
Errors are the ``fcc_lt.util.errors`` types (``ConfigError``, ``DataError``, ``CheckpointError``, ...), with the
messages the command line prints. ``import fcc_lt`` stays cheap: this module (and torch) is imported on
first use of one of these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcc_lt.evaluation.export import FORMATS, ExportResult, export_run
from fcc_lt.evaluation.inference import Classifier, Prediction, load_classifier

__all__ = ["FORMATS", "Classifier", "ExportResult", "Prediction", "TrainResult", "evaluate", "export", "load",
           "predict", "train"]


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns: the run directory and its final metrics (the content of its eval.json)."""

    run_dir: Path
    metrics: dict[str, Any]


def load(run: str | Path, checkpoint: str = "last", *, device: str | None = None) -> Classifier:
    """A trained run, ready to classify images.

    Args:
        run: a run directory that ``fcc train`` wrote (or one of its checkpoint files).
        checkpoint: ``"last"``, ``"best"`` or a checkpoint file.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; default: the run's ``device``.

    Returns:
        A [Classifier][fcc_lt.Classifier]: ``.model`` (in eval mode, tau-normalised when the run's config
        says so, as ``fcc eval`` evaluates it), ``.class_names``, ``.preprocess`` and ``.predict(images)``,
        where images are file paths, PIL images or uint8 pixels.
    """
    return load_classifier(run, checkpoint, device=device)


def predict(run: str | Path, images: Any, *, top_k: int = 5, checkpoint: str = "last",
            device: str | None = None) -> Prediction | list[Prediction]:
    """``load(run).predict(images)``: a [Prediction][fcc_lt.Prediction] for one image, a list for several."""
    return load_classifier(run, checkpoint, device=device).predict(images, top_k=top_k)


def train(config: str | Path, overrides: Sequence[str] = (), *, overwrite: bool = False) -> TrainResult:
    """Train (and finally evaluate) a run, as ``fcc train CONFIG key=value ...`` does.

    Args:
        config: a config file, or the name of a shipped one such as ``"cifar10_lt/ce_fcc_if100"``.
        overrides: ``"key.sub=value"`` strings, e.g. ``["train.epochs=30", "data.root=/data"]``.
        overwrite: start afresh in a run directory that already holds a run.

    Returns:
        A [TrainResult][fcc_lt.TrainResult]: the run directory and its eval.json content.
    """
    from fcc_lt.config.load import load_config
    from fcc_lt.engine.trainer import Trainer
    from fcc_lt.util.distributed import cleanup

    if isinstance(overrides, str):
        overrides = [overrides]
    cfg = load_config(config, list(overrides))
    try:
        metrics = Trainer(cfg, overwrite=overwrite).fit()
    finally:
        cleanup()
    return TrainResult(Path(cfg.out), metrics)


def evaluate(run: str | Path, *, checkpoint: str = "last", split: str = "test",
             overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a split, as ``fcc eval RUN`` does: writes
    ``eval_<checkpoint>_<split>.json`` (and its confusion files) into the run directory and returns its
    content (top1, top5, many / medium / few-shot and per-class accuracy, in percent)."""
    from fcc_lt.evaluation.evaluate import evaluate_run
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.util.distributed import cleanup

    if isinstance(overrides, str):
        overrides = [overrides]
    try:
        return evaluate_run(Path(run), load_run_config(Path(run), list(overrides)), checkpoint, split)
    finally:
        cleanup()


def export(run: str | Path, format: str = "torchscript", out: str | Path | None = None, *,
           checkpoint: str = "last") -> ExportResult:
    """Export a run's evaluated model, as ``fcc export RUN --format FORMAT`` does.

    ``torchscript`` and ``onnx`` take uint8 RGB pixels (B, 3, S, S) and fold the run's normalisation (and
    tau-normalisation) into the model; ``safetensors`` holds the network's weights (tau-normalisation
    folded into the head) and leaves the normalisation to the caller. Every format writes a JSON file
    beside it with the input size, mean, std, class names and the run's config.

    Returns:
        An [ExportResult][fcc_lt.ExportResult] with the paths of the model file and its JSON file.
    """
    return export_run(run, format, out, checkpoint=checkpoint)
