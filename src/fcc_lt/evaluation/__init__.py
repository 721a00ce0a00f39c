"""Evaluation: passes over a split (``passes``), metrics and feature statistics (``metrics``), the files
they become (``files``), the one run/model loader (``run_loader``, with the original code's checkpoint
names in ``original_checkpoint``), the commands that join them (``evaluate``), tau sweeps and predict.

Imports: data, models, config, util.
"""
