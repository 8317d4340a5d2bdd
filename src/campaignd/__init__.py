"""campaignd: long-lived, rate-controlled traffic and message campaigns."""

__version__ = "0.1.0"
