"""Experiments over many runs: the one reader of run directories (``run_folder``), reports with seed
statistics (``report``, ``statistics``), plots, and sweeps (``sweep``: spec and plan, local processes,
SLURM through submitit, progress display).

Imports: engine, methods, evaluation, data, models, config, util.
"""
