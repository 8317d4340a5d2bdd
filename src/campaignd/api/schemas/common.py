"""Shared schema pieces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from campaignd.domain.text import find_unstorable

# Ids stay within what JSON numbers carry exactly (2**53) and what both databases store.
MAX_ID = 2**53
IdField = Annotated[int, Field(ge=1, le=MAX_ID)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


def not_blank(label: str) -> Callable[[str], str]:
    """A check that strips a name and refuses one with nothing left, in the label's words."""

    def check(value: str) -> str:
        value = value.strip()
        if not value:
            raise PydanticCustomError("blank", f"{label} cannot be blank.")
        return value

    return check


# A name as people see it in lists: surrounding spaces dropped, never blank.
NameText = Annotated[str, Field(max_length=200), AfterValidator(not_blank("Name"))]


class RequestBody(BaseModel):
    """Base of every request body: no field, however nested, holds text no database stores.

    PostgreSQL refuses NUL in text and neither database takes a lone surrogate; refused here,
    such a value is a 422 naming its field instead of a 500 from the driver.
    """

    @field_validator("*", mode="before", check_fields=False)
    @classmethod
    def _storable(cls, value: Any) -> Any:
        found = find_unstorable(value)
        if found is not None:
            problem, where = found
            # `where` names the spot inside a nested value; the error body adds it to the field.
            raise PydanticCustomError(
                "unstorable_text", problem, {"where": ".".join(map(str, where))}
            )
        return value


class ErrorBody(BaseModel):
    """Every error response: a sentence plus its context fields."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="A human sentence saying what went wrong.")


class StatusChange(RequestBody):
    status: str = Field(description="The status to move to.", examples=["running"])


class StatusChanged(BaseModel):
    campaign_id: int
    status: str
    previous_status: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A domain rule refused the request."},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
    404: {"model": ErrorBody, "description": "Unknown id."},
    409: {"model": ErrorBody, "description": "Illegal status transition or conflicting state."},
    413: {"model": ErrorBody, "description": "Request body too large."},
    422: {"model": ErrorBody, "description": "The body does not fit the schema."},
}
