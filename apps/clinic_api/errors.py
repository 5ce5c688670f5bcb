"""Errors the routes raise beyond HTTPException, in the API's one error body shape."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError


def invalid(field: str, problem: str) -> RequestValidationError:
    """A 422 naming a body field, shaped like the ones request validation gives (main.py's handler)."""
    return RequestValidationError([{"loc": ("body", field), "msg": problem, "type": "value_error"}])
