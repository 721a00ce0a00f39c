"""`python -m fcc_lt` (what torchrun launches) and the `fcc` console script: ``fcc_lt.cli.main.main``, with Ctrl-C
during start-up already guarded (``fcc_lt.cli.startup``) before the command line module is imported."""

from fcc_lt.cli import startup


def main() -> int:
    """The console script's entry point (pyproject.toml): guard start-up, then run the command line."""
    startup.guard()
    from fcc_lt.cli.main import main as cli_main

    return cli_main()


if __name__ == "__main__":
    raise SystemExit(main())
