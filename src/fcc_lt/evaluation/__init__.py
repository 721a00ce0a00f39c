"""Evaluation: passes over a split (``passes``), metrics and feature statistics (``metrics``), the files
they become (``files``), the one run/model loader (``run_loader``, with the original code's checkpoint
names in ``original_checkpoint``), the commands that join them (``evaluate``), tau sweeps, predict, and
the analyses of FCC's mechanism (``analyses``: pure functions of features and a head; ``analyze_run``:
`fcc analyze`).

Imports: data, models, config, util.
"""
