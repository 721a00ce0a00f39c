"""The long-tail methods: FCC itself (``fcc``), losses, samplers (a sampler is a method, not data
plumbing), mixers, the two-stage pieces (``two_stage``: init_from and freezing; the DiVE teacher in
``distill``) and CAM-based sampling (``cam``). Each part registers itself in a registry of
``fcc_lt.util.registry`` and is chosen by name in the config.

Imports: evaluation (the run loader, for teachers, init_from and CAM), data, models, config, util.
"""
