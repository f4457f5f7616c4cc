"""/openapi.json of the reference service documents the problem responses (401 on protected
routes, 429 and 503 everywhere) and the bearer and cookie security schemes."""

from __future__ import annotations

from pathlib import Path

from tests.app.conftest import AppFactory, embedded_env


async def test_openapi_lists_problems_and_security_schemes(tmp_path: Path,
                                                           app_factory: AppFactory) -> None:
    _, client = await app_factory(embedded_env(tmp_path))
    schema = (await client.get("/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer",
                                 "description": "Authorization: Bearer <session token>"}
    assert schemes["session-cookie"]["in"] == "cookie"
    assert schemes["session-cookie"]["name"] == "__Host-session"
    assert schema["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status"]
    problem = {"$ref": "#/components/schemas/Problem"}
    me = schema["paths"]["/v1/me"]["get"]
    assert me["security"] == [{"bearer": []}, {"session-cookie": []}]
    for status in ("401", "429", "503"):
        assert me["responses"][status]["content"]["application/problem+json"]["schema"] == problem
    login = schema["paths"]["/v1/auth/login"]["post"]
    assert "security" not in login and "429" in login["responses"]
    assert login["responses"]["429"]["content"]["application/problem+json"]["schema"] == problem
    # Every protected route says so: all of them use the session dependency.
    protected = [(p, m) for p, ops in schema["paths"].items() for m, op in ops.items()
                 if "security" in op]
    assert ("/v1/items", "post") in protected and ("/v1/admin/breakers", "get") in protected
    assert all("401" in schema["paths"][p][m]["responses"] for p, m in protected)
