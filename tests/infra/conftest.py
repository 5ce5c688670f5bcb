import pytest
from moto.server import ThreadedMotoServer

from tests.infra.pulumi_mocks import Graph, evaluate_program


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
def monkeypatch_module():
    """Fake credentials for moto, and no profile of the developer's that boto3 could pick up instead."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": MOTO_REGION}.items():
            patch.setenv(key, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield patch


@pytest.fixture(scope="module")
def endpoint(monkeypatch_module):
    """A moto server (a real HTTP AWS emulator) for one test module."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
