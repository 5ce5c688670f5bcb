"""A moto server, a real HTTP AWS emulator, for the app and infra tests alike."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

START_SECONDS = 20


@contextmanager
def moto_server(region: str) -> Iterator[str]:
    """Starts a server in a process of its own and yields its URL, with fake credentials in the environment and no
    profile of the developer's that boto3 could pick up instead.

    A process, not moto's ThreadedMotoServer: moto keeps its backends and its record of every object (what
    /moto-api/data.json lists) per process, so in-process servers share both. An RDS subnet group an infra test made
    then broke the app tests' reading of sent emails from data.json (moto cannot list that model), or not, depending
    on which tests had run before in the same process."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
        }.items():
            patch.setenv(key, value)
        patch.delenv("AWS_PROFILE", raising=False)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_serving(server, url)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(server: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"moto server exited with {server.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not serve {url} within {START_SECONDS} s") from None
            time.sleep(0.05)
