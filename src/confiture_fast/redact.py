"""The secrets this process knows (passwords, the anonymization secret), masked in every message.

Whoever resolves a secret registers it here; the command line cleans each message it prints.
"""


class Redactor:
    """Every message leaves through here: known passwords and the secret are masked."""

    secrets: list[str] = []

    @classmethod
    def add(cls, value: str | bytes | None) -> None:
        if value:
            cls.secrets.append(value.decode(errors="replace") if isinstance(value, bytes) else value)

    @classmethod
    def clean(cls, text: str) -> str:
        for s in cls.secrets:
            if len(s) >= 3:
                text = text.replace(s, "***")
        return text
