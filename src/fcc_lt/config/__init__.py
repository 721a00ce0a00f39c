"""What a run is: the schema (``schema``: one page of typed dataclasses), loading YAML with ``base:`` chains
and ``key=value`` overrides (``load``), validation, the one place where ranges are checked (``validate``),
the start-epoch rule and schedule rescaling (``schedule``), ``fcc config``'s provenance (``explain``) and
the import of the original code's configs (``importer``).

Imports: util only.
"""
