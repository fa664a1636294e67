"""confiture-fast bench (being written)."""


def register(app) -> None:
    """Adds the `bench` command to the CLI."""
