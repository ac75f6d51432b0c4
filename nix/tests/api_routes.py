"""API checks where pydantic 2 differences in patches/webui/0002 show.

- check_get_routes: every parameterless GET route of the webui's API answers 200 with JSON. FastAPI
  validates each answer against its response model (a value pydantic 1 coerced by itself answers 500).
- check_explicit_nulls: txt2img and img2img with every field whose default is None sent as an
  explicit null (script_name, mask, ...) answer 200. pydantic 1 made such a field Optional by
  itself; on pydantic 2 a field not spelled Optional answers 422 to a null, which clients send
  (upstream's own test/test_img2img.py sends "mask": None).

Shared by checks.e2e-cpu (nix/tests/e2e.py) and tests/nixpkgs-env/e2e.py. Only the standard library.
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


# The request fields upstream's modules/api/models.py adds with a None default (typed str there),
# beside the processing classes' own None defaults: in the schema, a property that is not required
# and has no "default" (pydantic 1 and 2 both leave a None default out).
NULL_FIELDS = {
    "txt2img": ("script_name", "force_task_id", "infotext"),
    "img2img": ("mask", "script_name", "force_task_id", "infotext"),
}


def _post(url: str, body: dict, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def check_explicit_nulls(base: str, init_image: str, timeout: float = 600) -> list[str]:
    """POSTs a 64x64, 3-step txt2img and an img2img of ``init_image`` (base64) with each None-default
    field of the request model an explicit null; returns what was sent null, or raises AssertionError
    naming every request that did not answer 200 with an image."""
    status, body = _get(f"{base}/openapi.json", timeout)
    assert status == 200, f"/openapi.json answered {status}"
    schemas = json.loads(body).get("components", {}).get("schemas", {})
    given = {"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler a"}
    img2img = {**given, "init_images": [init_image], "denoising_strength": 0.5}
    requests = {
        "txt2img": ("StableDiffusionProcessingTxt2Img", given),
        "img2img": ("StableDiffusionProcessingImg2Img", img2img),
    }
    sent, failed = [], []
    for route, (schema, values) in requests.items():
        model = schemas.get(schema, {})
        required = set(model.get("required", ()))
        defaults_none = {k for k, v in model.get("properties", {}).items() if k not in required and "default" not in v}
        nulls = set(NULL_FIELDS[route]) | defaults_none
        nulls -= values.keys()
        status, body = _post(f"{base}/sdapi/v1/{route}", {**dict.fromkeys(nulls), **values}, timeout)
        try:
            images = json.loads(body)["images"]
        except (ValueError, KeyError, TypeError):
            images = None
        if status != 200 or not images:
            failed.append(f"{route} with {', '.join(sorted(nulls))} null: {status} {body[:600]!r}")
        sent.append(f"{route}: {', '.join(sorted(nulls))}")
    assert not failed, "requests with explicit nulls that failed:\n" + "\n".join(failed)
    return sent
