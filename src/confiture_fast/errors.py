"""The errors a user can see: each says what went wrong and how to fix it, in one or two lines.

Exit codes: 2 for bad usage or configuration (nothing was touched), 1 for a failure during the sync.
"""


class ConfiturError(Exception):
    exit_code = 1

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"


class ConfigError(ConfiturError):
    """Bad configuration or arguments, found before the target is touched."""

    exit_code = 2


class ValidationError(ConfigError):
    """Several problems found together during validation; all are reported at once."""

    def __init__(self, title: str, problems: list[str], fix: str | None = None):
        self.problems = problems
        body = title + "\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(body, fix)


class SyncError(ConfiturError):
    """A failure during the sync itself."""

    exit_code = 1


class Terminated(KeyboardInterrupt):
    """SIGTERM: stopped gracefully like Ctrl-C, but exiting 143."""
