"""Real servers on loopback ports: uvicorn in a thread, called over HTTP with httpx.

The default model is loaded once per session and shared by every server (each server has its
own batching worker, indexes and settings).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'maxsim[server]'")
uvicorn = pytest.importorskip("uvicorn")

from maxsim.api import BatchSettings, Limits, Settings, create_app  # noqa: E402 - after the importorskip

SEEDS = Path(__file__).with_name("seed_examples.json")  # copy of the spec's seed-examples.json


@dataclass
class LiveServer:
    url: str
    settings: Settings
    app: object
    server: object
    thread: threading.Thread

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120.0, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_server(model, settings: Settings) -> LiveServer:
    app = create_app(settings, model=model)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", settings, app, server, thread)


@pytest.fixture(scope="session")
def model():
    import maxsim

    return maxsim.load()


@pytest.fixture(scope="session")
def serve(model) -> Iterator:
    """Factory: serve(settings) -> LiveServer, stopped at the end of the session."""
    started: list[LiveServer] = []

    def make(settings: Settings | None = None, **overrides) -> LiveServer:
        s = replace(settings or Settings(), **overrides)
        srv = start_server(model, s)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def server(serve, tmp_path_factory) -> LiveServer:
    """The default configuration: no auth, batching on, default limits, an index directory."""
    return serve(Settings(index_dir=str(tmp_path_factory.mktemp("indexes"))))


@pytest.fixture()
def client(server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="session")
def seeds() -> dict:
    import json

    with open(SEEDS, encoding="utf-8") as fh:
        return json.load(fh)


def assert_error(resp: httpx.Response, status: int, code: str | None = None, mentions: tuple[str, ...] = ()) -> dict:
    """A JSON error with the status, code, a request id and a message naming what is wrong."""
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    body = resp.json()
    assert body["request_id"] == resp.headers["x-request-id"]
    if code is not None:
        assert body["code"] == code, body
    text = (
        (body.get("message") or "") + " " + (body["detail"] if isinstance(body["detail"], str) else str(body["detail"]))
    )
    for word in mentions:
        assert word in text, (word, text)
    return body


__all__ = ["BatchSettings", "Limits", "LiveServer", "Settings", "assert_error"]
