"""FastAPI dependencies."""

from __future__ import annotations

from fastapi import Request

from campaignd.services import Services


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]
