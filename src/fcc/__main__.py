"""`python -m fcc` (what torchrun launches) and the `fcc` console script: ``fcc.cli.main``, with Ctrl-C
during start-up already guarded (``fcc.startup``) before the command line module is imported."""

from fcc import startup


def main() -> int:
    """The console script's entry point (pyproject.toml): guard start-up, then run the command line."""
    startup.guard()
    from fcc.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
