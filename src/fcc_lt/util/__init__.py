"""Foundations every block may use: the error types and message helpers, type coercion of config values,
bounded file reads and atomic writes, the run-directory lock, the part registries, command-line argument
types, and the run-time basics that data, evaluation and training share (process group, autocast, random
streams).

Imports: nothing of fcc_lt outside util.
"""
