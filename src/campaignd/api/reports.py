"""Campaign reports as JSON or CSV downloads."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse, Response

# For the OpenAPI schema: a report answers JSON, or CSV with ?format=csv.
REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report as JSON, or its time series as CSV.",
        "content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}},
    }
}


def as_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def respond(
    report: dict[str, Any], series_key: str, columns: Sequence[str], fmt: str, name: str
) -> Response:
    """The whole report as JSON, or its time series as a CSV attachment."""
    if fmt == "csv":
        return Response(
            as_csv(report[series_key], columns),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return JSONResponse(report)
