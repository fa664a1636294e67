"""confiture-fast scan (being written)."""


def register(app) -> None:
    """Adds the `scan` command to the CLI."""
