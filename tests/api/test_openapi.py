"""The OpenAPI document is complete (every route the app serves, with schemas and the error
shape) and true (schemathesis against a live server, response conformance on: 0 failures)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from swiftshot.api import openapi
from swiftshot.api.app import create_app
from swiftshot.config import Settings

BODY_METHODS = {"POST", "PUT", "PATCH"}


@pytest.fixture(scope="module")
def app_and_schema(tmp_path_factory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("oa") / "var"))
    return app, app.openapi()


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_every_registered_route_is_documented(app_and_schema):
    """Generic: a route added anywhere (a new routes_*.py, a plain add_route) fails here until
    it has its openapi.document(...) call in api/openapi_routes.py."""
    app, schema = app_and_schema
    routes = sorted(set(openapi.registered_routes(app)))
    assert len(routes) >= 12, routes  # the walk itself found the app's routes
    missing = [f"{m} {p}" for m, p in routes if m.lower() not in schema["paths"].get(p, {})]
    assert not missing, f"routes missing from /openapi.json (document them in " \
                        f"api/openapi_routes.py): {missing}"


def test_every_operation_has_schemas_examples_and_the_error_shape(app_and_schema):
    app, schema = app_and_schema
    problems = []
    for method, path in sorted(set(openapi.registered_routes(app))):
        op = schema["paths"][path][method.lower()]
        where = f"{method} {path}"
        ok = [r for s, r in op["responses"].items() if s.startswith("2")]
        if not ok:
            problems.append(f"{where}: no 2xx response")
        for r in ok:
            content = r.get("content") or {}
            if not content or not all(m.get("schema") for m in content.values()):
                problems.append(f"{where}: a 2xx response without a content schema")
            for media, m in content.items():
                if media == "application/json" and not _resolve(schema, m["schema"]).get(
                        "properties"):
                    problems.append(f"{where}: JSON answer schema has no properties")
        errors = [s for s in op["responses"] if s[0] in "45"]
        if path not in ("/", "/healthz", "/v1/presets") and not errors:  # these cannot fail
            problems.append(f"{where}: no error responses")
        for s in errors:
            media = op["responses"][s].get("content", {}).get("application/json", {})
            if not _resolve(schema, media.get("schema", {})).get("properties"):
                problems.append(f"{where}: error {s} without the error schema")
        if method in BODY_METHODS:
            body = op.get("requestBody", {}).get("content", {})
            if not body or not all(_resolve(schema, m.get("schema", {})).get("properties")
                                   for m in body.values()):
                problems.append(f"{where}: request body without a schema")
            if not any("example" in m or _resolve(schema, m.get("schema", {})).get("example")
                       for m in body.values()):
                problems.append(f"{where}: request body without an example")
    assert not problems, "\n".join(problems)
    assert schema["components"]["schemas"]["Error"]["properties"]["error"]["required"] == [
        "message", "type", "param", "code"]


def test_multipart_bodies_are_documented(app_and_schema):
    _, schema = app_and_schema
    for path, field in (("/v1/render", "product"), ("/v1.0/removebg", "image_file")):
        mp = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert mp["schema"]["properties"][field]["format"] == "binary"


@pytest.mark.slow
def test_schemathesis_finds_no_failures_against_a_live_server(serve, tmp_path):
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is a dev dependency (pyproject [dev])"
    s = serve()
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,"
              "response_schema_conformance,response_headers_conformance")
    r = subprocess.run(
        [st, "run", f"{s.url}/openapi.json", "--checks", checks, "--max-examples", "40",
         "--seed", "11", "--workers", "2", "--phases", "examples,coverage,fuzzing",
         "--request-timeout", "30"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    tail = r.stdout[-6000:]
    assert r.returncode == 0, r.stdout[-20000:]
    assert "Tested: 12" in tail or "Tested:" in tail
    assert "No issues found" in tail or " 0 failures" in tail or "failure" not in tail, tail


def test_an_ops_failure_reaching_any_route_is_a_422_not_a_500():
    """Found by schemathesis: a generation batched with a render whose preset found no product
    got the render's OpsError, which the generations route did not map (500)."""
    import orjson

    from swiftshot.api.errors import response_for
    from swiftshot.ops import OpsError

    r = response_for(OpsError("preset amazon: the cutout is empty"))
    assert r.status_code == 422
    assert orjson.loads(r.body)["error"]["code"] == "invalid_ops"
