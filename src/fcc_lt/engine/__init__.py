"""Training: building a run's parts from its config (``build``), the training step (``step``), the trainer
(``trainer``: the epoch loop only), checkpoints and the run directory (``checkpoint``, ``run_dir``), an
epoch's tallies and progress (``meter``), signals, speed choices (``speed``), metric logging and trackers,
and the learning-rate schedule (``lr_schedule``).

Imports: methods, evaluation (evaluation passes and the run loader), data, models, config, util.
"""
