"""confiture-fast verify (being written)."""


def register(app) -> None:
    """Adds the `verify` command to the CLI."""
