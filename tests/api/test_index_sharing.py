"""Issue 15's server gaps: the server and other processes (the command line) write to one index
directory in turn; DELETE /v1/indexes/{name}; `maxsim serve` on a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maxsim.api import Settings
from tests.api.conftest import assert_error, start_server

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
DOCS = [
    {"text": f"Document number {i} about rivers and cities.", "id": f"d{i}", "metadata": {"i": i}} for i in range(4)
]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "maxsim.cli", *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT
    )


@pytest.fixture()
def shared(serve, tmp_path):
    """A server with an index directory and one index of four documents, written through the server."""
    srv = serve(Settings(index_dir=str(tmp_path / "idx")))
    with srv.client() as c:
        assert c.post("/v1/indexes", json={"name": "shared"}).status_code == 201
        assert c.post("/v1/indexes/shared/documents", json={"documents": DOCS}).status_code == 201
        yield srv, c, tmp_path / "idx" / "shared"


def test_the_command_line_writes_while_the_server_serves(shared):
    srv, c, path = shared
    r = cli("index", "delete", str(path), "d1", "d2")
    assert r.returncode == 0, r.stderr  # refused with "already open for writing" while the server held the lock
    assert c.get("/v1/indexes/shared").json()["documents"] == 2  # the server reads the command line's write at once
    hits = c.post("/v1/indexes/shared/search", json={"query": "rivers and cities", "k": 10}).json()["results"]
    assert sorted(h["id"] for h in hits) == ["d0", "d3"]
    # and the server still writes afterwards, and the command line after that
    r = c.post("/v1/indexes/shared/documents", json={"documents": [{"text": "A new document.", "id": "n1"}]})
    assert r.status_code == 201 and r.json()["documents"] == 3
    assert cli("index", "delete", str(path), "n1").returncode == 0
    assert_error(c.delete("/v1/indexes/shared/documents/n1"), 404, "DOCUMENT_NOT_FOUND", ("n1",))


HOLD = """
import sys, time
from maxsim.index import Index
ix = Index.open(sys.argv[1])
ix.delete(["d0"])  # the first write takes the writer lock; it is held until close
print("holding", flush=True)
time.sleep(120)
"""


def test_a_write_while_another_process_writes_is_a_clear_409(shared):
    srv, c, path = shared
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        t0 = time.monotonic()
        r = c.post("/v1/indexes/shared/documents", json={"documents": [{"text": "waits", "id": "w"}]})
        waited = time.monotonic() - t0
        assert_error(r, 409, "INDEX_LOCKED", (f"pid {holder.pid}",))
        assert waited >= 1.5  # it waited for the other writer before giving up
        assert_error(c.delete("/v1/indexes/shared"), 409, "INDEX_LOCKED", (f"pid {holder.pid}",))
        # reads go on meanwhile
        assert c.get("/v1/indexes/shared").json()["documents"] == 3
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    r = c.post("/v1/indexes/shared/documents", json={"documents": [{"text": "now it can", "id": "w"}]})
    assert r.status_code == 201, r.text


def test_delete_an_index(shared, model, tmp_path):
    srv, c, path = shared
    r = c.delete("/v1/indexes/shared")
    assert r.status_code == 200 and r.json() == {"index": "shared", "deleted": True}
    assert not path.exists() and not any(p.name.startswith(".deleting") for p in path.parent.iterdir())
    assert_error(c.get("/v1/indexes/shared"), 404, "INDEX_NOT_FOUND")
    assert_error(c.post("/v1/indexes/shared/search", json={"query": "rivers"}), 404, "INDEX_NOT_FOUND")
    assert "shared" not in [d["name"] for d in c.get("/v1/indexes").json()["data"]]
    assert_error(c.delete("/v1/indexes/shared"), 404, "INDEX_NOT_FOUND")
    # the name is free again, for a new empty index
    assert c.post("/v1/indexes", json={"name": "shared"}).json()["documents"] == 0
    # an index the server was given by path is not the server's to delete
    from maxsim.index import Index

    with Index.create(tmp_path / "given", model=model) as ix:
        ix.add(["a given document"], ids=["g"])
    srv2 = start_server(model, Settings(indexes=(("given", str(tmp_path / "given")),)))
    try:
        with srv2.client() as c2:
            assert_error(c2.delete("/v1/indexes/given"), 403, "INDEX_DELETION_DISABLED", ("--index",))
            assert c2.get("/v1/indexes/given").json()["documents"] == 1
    finally:
        srv2.stop()
    assert (tmp_path / "given" / "manifest.json").exists()


def test_serve_on_a_busy_port_says_so_before_loading(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        t0 = time.monotonic()
        r = cli("serve", "--port", str(port), timeout=60)
        seconds = time.monotonic() - t0
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == [
        f"maxsim serve: error: port {port} on 127.0.0.1 is already in use "
        "(another server is running there?); stop it or pick another --port"
    ], r.stderr[-2000:]
    assert "serving" not in r.stderr
    print(f"busy port refused in {seconds:.1f} s")
