"""The ``fcc`` command: the parser and one thin module per command family (parse, call, map errors to exit
codes). Nothing below imports it.

Imports: every other block.
"""
