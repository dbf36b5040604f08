"""A bounded property-based fuzz of the whole OpenAPI surface with Schemathesis, against a real
server on loopback: no 5xx, every answer's status, content type, headers and body as the OpenAPI
document declares them, schema-invalid requests refused, undeclared methods answered 405.

Bounded: a fixed seed and 15 generated cases per operation (examples, coverage and fuzzing phases),
about 700 requests in all.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from maxsim.api import Settings

pytest.importorskip("schemathesis", reason="schemathesis is not installed (it is in the dev extra)")

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
]
# Not run: positive_data_acceptance (schema-valid requests are rightly refused when they name a model
# or an index the server does not have: those are known only at run time); allow_header_conformance
# (/v1/indexes/{name}/documents/delete also matches /v1/indexes/{name}/documents/{doc_id}, so its
# Allow rightly names DELETE too).

CONFIG = """
[dictionaries.index-names]
values = ["fuzz"]

[dictionaries.doc-ids]
values = ["seed", "other"]

[parameters]
"path.name" = { dictionary = "index-names", probability = 0.8 }
"path.doc_id" = { dictionary = "doc-ids", probability = 0.5 }

[[operations]]
include-name = "DELETE /v1/indexes/{name}"
parameters = { "path.name" = "scratch" }
"""


@pytest.mark.slow
def test_openapi_surface_fuzz(serve, tmp_path):
    srv = serve(Settings(index_dir=str(tmp_path / "indexes")))
    with srv.client() as c:
        for name in ("fuzz", "scratch"):
            assert c.post("/v1/indexes", json={"name": name}).status_code == 201
        seed = [
            {"text": "seed document about rivers", "id": "seed", "metadata": {"lang": "en", "n": 1}},
            {"text": "another document", "id": "other", "metadata": {"lang": "fr"}},
        ]
        assert c.post("/v1/indexes/fuzz/documents", json={"documents": seed}).status_code == 201
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        srv.url + "/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "15",
        "--seed",
        "20261204",
        "--workers",
        "2",
        "--generation-database",
        "none",
        "--no-color",
        "--request-timeout",
        "60",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    summary = r.stdout[-6000:]
    assert r.returncode == 0, summary
    m = re.search(r"(\d+) generated, (\d+) passed", r.stdout)
    assert m, summary
    generated, passed = int(m.group(1)), int(m.group(2))
    assert generated == passed and generated >= 400, summary
    assert re.search(r"Tested: 1[4-9]|Tested: [2-9]\d", r.stdout), summary  # every operation was reached
    print(f"schemathesis: {generated} cases, all passed")
