"""confiture-fast: copy production PostgreSQL into staging with PII anonymized on the way."""

__version__ = "0.1.0"
