"""FastAPI dependencies."""

from __future__ import annotations

from fastapi import Request

from campaignd.services import Services


async def services(request: Request) -> Services:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hand-off (and
    # GIL contention) on every request for what is an attribute read.
    return request.app.state.services  # type: ignore[no-any-return]
