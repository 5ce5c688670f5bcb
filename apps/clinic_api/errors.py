"""The API's error bodies: what routes raise beyond HTTPException, and how the OpenAPI document describes them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel

from clinic_api import deps
from clinic_api.models import ID_MAX


class Problem(BaseModel):
    """Every error but a 422: a sentence naming the field, value or rule at fault."""

    detail: str


class FieldProblem(BaseModel):
    field: str
    """Dotted path of the field in the body, or a query or path parameter's name; `body` for the body as a whole."""
    problem: str


class Invalid(BaseModel):
    """A 422: each field of the request at fault and what is wrong with it."""

    detail: str
    errors: list[FieldProblem]


MEANING = {
    400: "The request cannot be used as it is (e.g. an expired or altered link)",
    401: "No valid bearer token, or its account may no longer use it (header WWW-Authenticate: Bearer)",
    403: "The caller's role or the account's state does not allow this",
    404: "No such resource, or not one the caller may see",
    409: "The request conflicts with the resource's state or another resource",
    413: "The request body is larger than the limit",
    415: "The body is not of the media type the route takes",
    422: "A field of the request is missing, malformed or outside what is allowed",
    429: "Too many attempts; try again after the Retry-After header's seconds",
    503: "The database is unavailable; try again after the Retry-After header's seconds",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with its body's schema."""
    return {code: {"model": Invalid if code == 422 else Problem, "description": MEANING[code]} for code in codes}


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def document_errors(router: APIRouter) -> None:
    """Adds to each route the errors its dependencies and body can give, besides those it declares itself: 401 with a
    token, 403 with a role, 503 with the database, 422 with parameters or a body, 413 with a body (body_limit.py)."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        calls = set(_calls(route.dependant))
        codes = set()
        if deps._token in calls:  # noqa: SLF001 - the dependency behind every authenticated route
            codes |= {401, 503}  # the token's account is checked in the database
        if any(hasattr(call, "roles") for call in calls):
            codes.add(403)
        if calls & {deps._session, deps._hot_pool}:  # noqa: SLF001
            codes.add(503)
        if route.body_field is not None:
            codes |= {413, 422}
        if route.dependant.path_params or route.dependant.query_params:
            codes.add(422)
        route.responses = {**responses(*sorted(codes)), **route.responses}


def invalid(field: str, problem: str, *more: tuple[str, str], where: str = "body") -> RequestValidationError:
    """A 422 naming a field of the body (or of `where`, e.g. "query"; dotted for nested fields, e.g. "blocks.1"), and
    any `more` (field, problem) pairs, shaped like the ones request validation gives (main.py's handler)."""
    return RequestValidationError(
        [
            {"loc": (where, *name.split(".")), "msg": text, "type": "value_error"}
            for name, text in ((field, problem), *more)
        ]
    )


def errors(**described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's own errors with what they mean there, e.g. errors(r404="doctor not found");
    document_errors adds the ones its dependencies give."""
    return {
        int(code[1:]): {"model": Invalid if code == "r422" else Problem, "description": text}
        for code, text in described.items()
    }


def existing_id(value: int, not_found: str) -> int:
    """A path id, or a 404 `not_found` when it lies outside the integer id columns: no row has it, and PostgreSQL
    would refuse to compare a column with it (a 500 before this)."""
    if not 1 <= value <= ID_MAX:
        raise HTTPException(status.HTTP_404_NOT_FOUND, not_found)
    return value
