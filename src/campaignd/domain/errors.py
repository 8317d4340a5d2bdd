"""One small exception tree; the API maps each class to one HTTP status in one place."""

from __future__ import annotations

from typing import Any


class CampaignError(Exception):
    """Base of every error campaignd raises on purpose; carries a sentence and its context."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.context}


class NotFound(CampaignError):
    """Raised when an id names nothing (404)."""


class RuleViolation(CampaignError):
    """Raised when a domain rule refuses a request (400)."""


class InvalidInput(CampaignError):
    """Raised when a field does not fit its schema or cannot be parsed (422)."""


class Conflict(CampaignError):
    """Raised when the request conflicts with the current state (409)."""


class IllegalTransition(Conflict):
    """Raised when a status change is not in the transition table (409)."""

    def __init__(self, current: str, requested: str, allowed: list[str], **context: Any) -> None:
        super().__init__(
            f"Cannot change status from '{current}' to '{requested}'.",
            current_status=current,
            requested_status=requested,
            allowed=allowed,
            **context,
        )


class Unauthorized(CampaignError):
    """Raised when a token is configured and the request lacks it or has a wrong one (401)."""


class ConfigurationError(CampaignError):
    """Raised at start-up when settings cannot work (missing key, bad URL)."""
