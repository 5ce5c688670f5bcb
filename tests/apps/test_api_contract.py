"""The OpenAPI document says what the API really answers: every error with its body's shape, checked by hand for the
rules and by a property-based fuzzer (schemathesis) against the running API for everything else."""

from __future__ import annotations

import os

import pytest
import schemathesis
from api_support import served_clinic
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi import checks

from clinic_api.main import create_app
from clinic_api.settings import Settings

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def document() -> dict:
    return create_app(Settings()).openapi()


def operations(document: dict):
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def schema_of(operation: dict, status: str) -> str:
    return operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]


def test_every_error_is_documented_with_the_body_the_api_gives(document):
    for name, operation in operations(document):
        for status in operation["responses"]:
            if status.startswith("4"):
                assert schema_of(operation, status) == ("Invalid" if status == "422" else "Problem"), (name, status)
    invalid = document["components"]["schemas"]["Invalid"]
    assert set(invalid["required"]) == {"detail", "errors"}


def test_authenticated_routes_document_401_and_503_and_role_bound_ones_403(document):
    documented = {name: set(operation["responses"]) for name, operation in operations(document)}
    assert {"401", "503"} <= documented["GET /exams"] and "403" not in documented["GET /exams"]
    assert {"401", "403", "404", "413", "415", "422", "503"} <= documented["PUT /exams/{exam_id}/result"]
    assert {"401", "403", "409", "413", "422", "503"} <= documented["POST /appointments"]
    assert {"401", "403", "422", "429"} <= documented["POST /auth/login"]
    assert "401" not in documented["GET /healthz"]


def test_a_fuzzer_finds_no_server_error_and_no_answer_the_document_does_not_describe(postgres, clinic_aws):
    with served_clinic(postgres, clinic_aws) as clinic:
        admin = clinic.user("admin")
        clinic.user("doctor"), clinic.user("patient")  # ids 2 and 3 exist for the fuzzer to find
        schema = schemathesis.openapi.from_dict(clinic.app.openapi())
        base_url = str(clinic.client.base_url)
        # Every other check runs. This one expects schema-valid data to be taken, but rules beyond the schema rightly
        # refuse some with a 422 naming the field: a guessable password, a starts_at in the past.
        excluded = [checks.positive_data_acceptance]
        for result in schema.get_all_operations():
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                # The same examples on every CI run, so a red build is this change's; CLINIC_FUZZ_EXPLORE=1 draws
                # new ones (how the slots overflow was found).
                derandomize=not os.environ.get("CLINIC_FUZZ_EXPLORE"),
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case):
                case.call_and_validate(base_url=base_url, headers=admin["headers"], excluded_checks=excluded)

            fuzz()
