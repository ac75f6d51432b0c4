"""Every parameterless GET route of the webui's API answers 200 with JSON.

Shared by checks.e2e-cpu (nix/tests/e2e.py) and tests/nixpkgs-env/e2e.py. FastAPI validates each
answer against its response model, so this is where pydantic 2 differences in patches/webui/0002
show (a value pydantic 1 coerced by itself answers 500). Only the standard library.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def check_get_routes(base: str, timeout: float = 60) -> dict[str, object]:
    """GETs each /sdapi/v1 route of ``base``'s /openapi.json that takes no path or required
    parameter; returns each route's decoded answer, or raises AssertionError naming every one
    that failed."""
    status, body = _get(f"{base}/openapi.json", timeout)
    assert status == 200, f"/openapi.json answered {status}"
    routes = sorted(
        path
        for path, operations in json.loads(body)["paths"].items()
        if path.startswith("/sdapi/v1/")
        and "get" in operations
        and "{" not in path
        and not any(p.get("required") for p in operations["get"].get("parameters", []))
    )
    assert "/sdapi/v1/extensions" in routes, routes
    answers, failed = {}, []
    for path in routes:
        status, body = _get(base + path, timeout)
        try:
            answers[path] = json.loads(body)
        except ValueError:
            status = f"{status} (not JSON)"
        if status != 200:
            failed.append(f"{path}: {status} {body[:300]!r}")
    assert not failed, "GET routes that failed:\n" + "\n".join(failed)
    return answers
