"""`python -m fcc` (what torchrun launches) is the same as the `fcc` command."""

from fcc.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
