"""`confiture-fast` and `python -m confiture_fast`. Kept light on purpose: each worker process
re-imports the main module when it starts, and must not pay for the whole command line."""

import sys


def main() -> None:
    from .cli.app import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
