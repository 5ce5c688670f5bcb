import pytest

from tests.infra.pulumi_mocks import Graph, evaluate_program
from tests.moto_server import moto_server


@pytest.fixture(scope="session")
def dev() -> Graph:
    """The whole program evaluated for the committed dev stack file."""
    return evaluate_program("dev")


@pytest.fixture(scope="session")
def prod() -> Graph:
    """The whole program evaluated for the committed prod stack file."""
    return evaluate_program("prod")


@pytest.fixture(params=["dev", "prod"])
def stack(request, dev, prod) -> Graph:
    """Each committed stack in turn."""
    return {"dev": dev, "prod": prod}[request.param]


MOTO_REGION = "eu-west-1"


@pytest.fixture(scope="module")
def endpoint():
    """A moto server for one test module."""
    with moto_server(MOTO_REGION) as url:
        yield url
