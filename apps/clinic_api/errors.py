"""Errors the routes raise beyond HTTPException, in the API's one error body shape."""

from __future__ import annotations

from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError

from clinic_api.models import ID_MAX


def invalid(field: str, problem: str) -> RequestValidationError:
    """A 422 naming a body field, shaped like the ones request validation gives (main.py's handler)."""
    return RequestValidationError([{"loc": ("body", field), "msg": problem, "type": "value_error"}])


def existing_id(value: int, not_found: str) -> int:
    """A path id, or a 404 `not_found` when it lies outside the integer id columns: no row has it, and PostgreSQL
    would refuse to compare a column with it (a 500 before this)."""
    if not 1 <= value <= ID_MAX:
        raise HTTPException(status.HTTP_404_NOT_FOUND, not_found)
    return value
