#!/usr/bin/env python3
"""Differential test of the webui's API: upstream (pydantic 1) against the flake's Python set (pydantic 2).

Three arms, started one after the other, each offline with the tiny model (tests/support/tiny_model.py)
and a fresh data directory (with one git-cloned user extension):

  A  upstream's own launch.py in a temporary copy of --root, on --venv (upstream's pins: pydantic 1)
  B  the launcher (--launcher) on --venv with --root as given
  C  the launcher built against the flake's interpreter (--nix-launcher) on --nix-venv with the patched
     tree --nix-root (tests/nixpkgs-env/run-e2e.sh makes all three under its ENV_DIR)

A's /openapi.json decides the requests; every arm gets the same ones, in the same order. For each
/sdapi/v1 route but the state-changing ones (server-*, POST options, create/*, train/*,
reload-/unload-checkpoint):

  gen:N        bodies (or query parameters) generated from the schema with hypothesis-jsonschema
               (fixed --seed, --cases per route), then pinned so that they stay cheap and offline:
               64x64, 1-2 steps, batch 1, no hires fix, no face restoration, no refiner, no script,
               a 64x64 PNG wherever an image is asked for, no interrogation model;
  null:F       each field F of the body sent as an explicit null (pydantic 1 made a field with a None
               default Optional by itself);
  numstr:F     a number field sent as a string;  strnum:F  a string field sent as a number;
  boolstr:F    a string field sent as a bool;   float:F   an integer field sent as 1.5-style float;
  no:F         a bool field sent as "no";       emptylist:F / listdict:F  [] for a list / object field;
  minimal, extra-field, empty-body, override-unknown, override-known: the body without its optional
               fields, with an unknown field, {}, and override_settings with an unknown / a known key.

Compared per request: the status class (2xx/4xx/5xx; connection failure = 0) and, when all answered
200, the JSON shape (every path with its JSON type; list items merged; no values). A difference
between A and B is blamed on the launcher, between B and C on the Python set (patch 0002 and the
newer packages).

Usage (any Python >= 3.10 with hypothesis-jsonschema 0.23.1 and hypothesis 6.155.2 - 6.170 breaks it;
the arms use their own environments):

    python tests/nixpkgs-env/api_diff.py --root UPSTREAM_TREE --venv UPSTREAM_VENV \\
        [--launcher BIN] [--nix-env ENV_DIR | --nix-venv V --nix-root T --nix-launcher BIN] \\
        [--cases 5] [--seed 0] [--routes REGEX] [--arms ABC] --out PREFIX

Defaults: --root $SD_WEBUI_TEST_ROOT, --venv $SD_WEBUI_TEST_VENV, --launcher $SD_WEBUI_LAUNCHER or
target/release, --nix-env .cache/nixpkgs-env (run-e2e.sh's default ENV_DIR). Writes PREFIX.json and
PREFIX.txt; exit status 0 when no difference was found, 1 otherwise, 2 when an arm could not start.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(HERE))

import e2e_harness as h  # noqa: E402

UPSTREAM_READY = re.compile(r"Startup time: ")
EXCLUDED = re.compile(
    r"^/sdapi/v1/(server-(stop|kill|restart)|create/.*|train/.*|reload-checkpoint|unload-checkpoint)$"
)
ARM_NAMES = {"A": "upstream launch.py, upstream env", "B": "launcher, upstream env", "C": "launcher, nixpkgs env"}
FLAGS = ["--skip-prepare-environment", "--skip-torch-cuda-test", "--no-half", "--use-cpu", "all", "--api"]
SAMPLER = "Euler"


# --------------------------------------------------------------------------- images


def png(width: int, height: int, gray: bool = False, text: dict[str, str] | None = None) -> str:
    """A base64 PNG without PIL: a gradient (RGB) or a left-black/right-white mask (grayscale)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = []
    for y in range(height):
        if gray:
            row = bytes(0 if x < width // 2 else 255 for x in range(width))
        else:
            row = bytes(v for x in range(width) for v in (x * 4 % 256, y * 4 % 256, 128))
        rows.append(b"\0" + row)
    header = struct.pack(">IIBBBBB", width, height, 8, 0 if gray else 2, 0, 0, 0)
    body = chunk(b"IHDR", header)
    for key, value in (text or {}).items():
        body += chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    body += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + body).decode()


IMAGE = png(64, 64)
MASK = png(64, 64, gray=True)
INFO_IMAGE = png(64, 64, text={"parameters": "a cat\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64"})


# --------------------------------------------------------------------------- schema


def resolve(node, components: dict, depth: int = 0):
    """The schema with every local $ref inlined (upstream's models are not recursive)."""
    if depth > 30:
        return {}
    if isinstance(node, dict):
        if "$ref" in node:
            target = components
            for part in node["$ref"].split("/")[2:]:  # "#/components/schemas/Name"
                target = target[part]
            merged = {**resolve(target, components, depth + 1), **{k: v for k, v in node.items() if k != "$ref"}}
            return merged
        return {k: resolve(v, components, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, components, depth + 1) for v in node]
    return node


def bounded(node):
    """Keep generated numbers small (seeds, sizes and steps of any size would only cost time)."""
    if isinstance(node, dict):
        node = {k: bounded(v) for k, v in node.items()}
        kinds = node.get("type")
        if kinds in ("integer", "number"):
            node.setdefault("minimum", -1)
            node.setdefault("maximum", 1000 if kinds == "integer" else 100.0)
            if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
                node.pop("minimum")
        if kinds == "string":
            node.setdefault("maxLength", 40)
        if kinds == "array":
            node.setdefault("maxItems", 3)
        if kinds == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)  # the extra-field case sends one
        elif kinds == "object":
            node.setdefault("maxProperties", 3)
        return node
    if isinstance(node, list):
        return [bounded(v) for v in node]
    return node


def field_type(prop: dict) -> str | None:
    for option in [prop, *prop.get("anyOf", []), *prop.get("allOf", [])]:
        kind = option.get("type")
        if kind and kind != "null":
            return kind
    return None


def routes_of(openapi: dict, pattern: re.Pattern) -> list[tuple[str, str, dict]]:
    found = []
    for path, operations in sorted(openapi["paths"].items()):
        if not path.startswith("/sdapi/v1/") or EXCLUDED.match(path) or not pattern.search(path):
            continue
        for method, operation in sorted(operations.items()):
            if method == "post" and path == "/sdapi/v1/options":
                continue
            found.append((method.upper(), path, operation))
    # GETs first (answers that the generations below change, e.g. progress, are asked again at the end)
    found.sort(key=lambda r: (r[0] != "GET", r[1] in ("/sdapi/v1/interrupt", "/sdapi/v1/skip"), r[1]))
    return found


def body_schema(operation: dict, components: dict) -> dict | None:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return resolve(content["schema"], components) if content else None


# --------------------------------------------------------------------------- requests


def base_body(path: str) -> dict:
    """A valid, cheap request for each route with a body."""
    name = path.rsplit("/", 1)[1]
    gen = {"prompt": "a cat", "seed": 1, "steps": 1, "width": 64, "height": 64, "cfg_scale": 7}
    return {
        "txt2img": {**gen, "sampler_name": SAMPLER, "batch_size": 1, "n_iter": 1},
        "img2img": {**gen, "sampler_name": SAMPLER, "init_images": [IMAGE], "denoising_strength": 0.5},
        "extra-single-image": {"image": IMAGE, "upscaling_resize": 2, "upscaler_1": "Lanczos"},
        "extra-batch-images": {
            "imageList": [{"data": IMAGE, "name": "a.png"}],
            "upscaling_resize": 2,
            "upscaler_1": "Nearest",
        },
        "png-info": {"image": INFO_IMAGE},
        "interrogate": {"image": IMAGE, "model": "no-such-model"},
    }.get(name, {})


def pin(path: str, body):
    """A generated body made cheap and offline (see the module docstring)."""
    if not isinstance(body, dict):
        return body
    name = path.rsplit("/", 1)[1]
    body = dict(body)
    if name in ("txt2img", "img2img"):
        body.update(width=64, height=64, batch_size=1, n_iter=1, enable_hr=False, restore_faces=False)
        body["steps"] = 1 + (body.get("steps") or 0) % 2 if isinstance(body.get("steps"), int) else 1
        body.update(sampler_name=SAMPLER, sampler_index=SAMPLER, script_args=[], alwayson_scripts={})
        body.update(seed_resize_from_h=-1, seed_resize_from_w=-1)
        # left out rather than null: the null:F cases test nulls
        for key in ("script_name", "refiner_checkpoint", "hr_checkpoint_name", "infotext", "firstpass_image"):
            body.pop(key, None)
        body.pop("scheduler", None)
        for key in ("mask_blur", "mask_blur_x", "mask_blur_y", "inpaint_full_res_padding"):
            if key in body:
                body[key] = 4
        if name == "img2img":
            body["init_images"] = [IMAGE]
            body["denoising_strength"] = 0.5
            if body.get("mask") is not None:
                body["mask"] = MASK
            elif "mask" in body:
                del body["mask"]
    elif name.startswith("extra-"):
        upscalers = ("None", "Lanczos", "Nearest")
        body.update(gfpgan_visibility=0, codeformer_visibility=0, upscaling_resize=2)
        body.update(upscaling_resize_w=96, upscaling_resize_h=96)
        for key in ("upscaler_1", "upscaler_2"):
            if key in body:
                body[key] = upscalers[len(str(body[key])) % 3]
        if name == "extra-single-image":
            body["image"] = IMAGE
        else:
            body["imageList"] = [{"data": IMAGE, "name": "a.png"}]
    elif name == "png-info":
        body["image"] = INFO_IMAGE
    elif name == "interrogate":
        body.update(image=IMAGE, model="no-such-model")
    return body


def generated(schema: dict, count: int, seed: int) -> list:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis_jsonschema import from_schema

    found: list = []

    @hseed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(from_schema(bounded(schema)))
    def collect(value):
        found.append(value)

    collect()
    return found[:count]


def sample(kind: str | None):
    return {"integer": 1, "number": 0.5, "string": "x", "boolean": True, "array": [], "object": {}}.get(kind)


def edge_cases(path: str, schema: dict) -> list[tuple[str, dict]]:
    base = base_body(path)
    props = schema.get("properties", {})
    cases: list[tuple[str, dict]] = []

    def value_of(name: str, prop: dict):
        if name in base:
            return base[name]
        if prop.get("default") is not None:
            return prop["default"]
        return sample(field_type(prop))

    for name, prop in props.items():
        kind = field_type(prop)
        value = value_of(name, prop)
        cases.append((f"null:{name}", {**base, name: None}))
        if kind in ("integer", "number") and isinstance(value, (int, float)) and not isinstance(value, bool):
            cases.append((f"numstr:{name}", {**base, name: str(value)}))
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            cases.append((f"float:{name}", {**base, name: value + 0.5}))
        if kind == "string":
            cases.append((f"strnum:{name}", {**base, name: 5}))
            cases.append((f"boolstr:{name}", {**base, name: True}))
        if kind == "boolean":  # "no": a true restore_faces or enable_hr would download or cost
            cases.append((f"no:{name}", {**base, name: "no"}))
        if kind == "array":
            cases.append((f"emptylist:{name}", {**base, name: []}))
        if kind == "object":
            cases.append((f"listdict:{name}", {**base, name: []}))
    required = set(schema.get("required", []))
    cases.append(("minimal", {k: v for k, v in base.items() if k in required or k in pin_keys(path)}))
    cases.append(("extra-field", {**base, "no_such_field": 1}))
    if path.rsplit("/", 1)[1] not in ("txt2img", "img2img"):  # {} there is a 512x512, 20-step image
        cases.append(("empty-body", {}))
    if "override_settings" in props:
        cases.append(("override-unknown", {**base, "override_settings": {"no_such_setting": 1}}))
        cases.append(("override-known", {**base, "override_settings": {"CLIP_stop_at_last_layers": 1}}))
    return cases


def pin_keys(path: str) -> set[str]:
    name = path.rsplit("/", 1)[1]
    if name in ("txt2img", "img2img"):
        return {"steps", "width", "height", "init_images", "sampler_name"}
    return {"image", "imageList", "model"}  # the interrogate model: no-such-model, never downloaded


def build_cases(openapi: dict, count: int, seed: int, pattern: re.Pattern) -> list[dict]:
    components = openapi.get("components", {})
    cases = []
    for method, path, operation in routes_of(openapi, pattern):
        schema = body_schema(operation, components)
        params = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
        if schema is not None:
            for i, body in enumerate(generated(schema, count, seed) if count else []):
                cases.append({"method": method, "path": path, "case": f"gen:{i}", "body": pin(path, body)})
            for name, body in edge_cases(path, schema):
                cases.append({"method": method, "path": path, "case": name, "body": body})
        elif params:
            query_schema = {
                "type": "object",
                "properties": {p["name"]: resolve(p.get("schema", {}), components) for p in params},
            }
            cases.append({"method": method, "path": path, "case": "no-query", "query": {}})
            for i, query in enumerate(generated(query_schema, count, seed) if count else []):
                cases.append({"method": method, "path": path, "case": f"gen:{i}", "query": query})
            for p in params:
                for label, value in (("yes", "yes"), ("one", "1"), ("junk", "junk"), ("empty", "")):
                    cases.append(
                        {"method": method, "path": path, "case": f"{label}:{p['name']}", "query": {p["name"]: value}}
                    )
        else:
            cases.append({"method": method, "path": path, "case": "plain"})
    # after the generations: progress (and every other GET) once more
    cases += [
        {**c, "case": "after-generation"} for c in cases if c["method"] == "GET" and c["case"] in ("plain", "no-query")
    ]
    return cases


def query_string(query: dict) -> str:
    from urllib.parse import urlencode

    def text(v):
        return json.dumps(v) if isinstance(v, (bool, type(None))) else str(v)

    return "?" + urlencode({k: text(v) for k, v in query.items()}) if query else ""


# --------------------------------------------------------------------------- arms


class Arm:
    def __init__(self, name: str, ctx: argparse.Namespace, config: h.E2EConfig, upstream: bool):
        self.name = name
        self.ctx = ctx
        self.config = config
        self.upstream = upstream
        self.server: h.Server | None = None
        self.url = ""
        self.starts: list[float] = []

    def start(self) -> None:
        base = self.ctx.base / self.name
        index = len(self.starts)
        data = base / "home" / ".local" / "share" / "stable-diffusion-webui"
        (data / "extensions").mkdir(parents=True, exist_ok=True)
        if index == 0:
            from e2e import make_git_extension

            make_git_extension(data / "extensions")
        port = h.free_port()
        flags = [*FLAGS, "--ckpt", str(self.ctx.ckpt), "--no-download-sd-model"]
        for d in ("tmp", "hf-empty"):
            (base / d).mkdir(parents=True, exist_ok=True)
        env = h.offline_env(base / "home", tmpdir=base / "tmp", hf_home=base / "hf-empty")
        log = self.ctx.logs / f"api-diff-{self.name}-{index}.log"
        if self.upstream:
            tree = base / "tree"
            if not tree.exists():
                h.copy_tree(self.config.root, tree)
            argv = [str(self.config.python), "launch.py", *flags, "--port", str(port), "--data-dir", str(data)]
            self.server = h.Server(argv, env=env, cwd=tree, log_path=log, ready_re=UPSTREAM_READY)
        else:
            argv = h.launcher_argv(self.config, data_dir=data, cache_dir=base / "cache", port=port, webui_args=flags)
            self.server = h.Server(argv, env=env, cwd=base, log_path=log)
        self.url = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        self.server.start()
        self.server.wait_ready(h.STARTUP_TIMEOUT)
        deadline = time.monotonic() + h.seconds(180)
        while time.monotonic() < deadline:  # the model loads in the background: wait for it
            try:
                if h.http("GET", self.url + "/sdapi/v1/sd-models", timeout=10).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        self.starts.append(round(time.monotonic() - t0, 1))

    def stop(self) -> None:
        if self.server is not None:
            if self.server.running():
                try:
                    self.server.stop()
                except AssertionError:
                    pass
            self.server.kill()

    def send(self, case: dict, timeout: float) -> dict:
        if self.server is None or not self.server.running():
            self.stop()
            self.start()  # a request killed the server: the next one gets a fresh one
        url = self.url + case["path"] + query_string(case.get("query") or {})
        t0 = time.monotonic()
        try:
            body = case.get("body")
            reply = h.http(case["method"], url, json_body=body, timeout=timeout)
            if case["method"] == "POST" and body is None and reply.status == 411:
                reply = h.http(case["method"], url, json_body={}, timeout=timeout)
        except OSError as error:
            return {"status": 0, "error": f"{type(error).__name__}: {error}", "seconds": time.monotonic() - t0}
        result: dict = {"status": reply.status, "seconds": round(time.monotonic() - t0, 2)}
        try:
            result["json"] = reply.json()
        except ValueError:
            result["text"] = reply.text(300)
        if reply.status != 200:
            result["text"] = reply.text(600)
            result.pop("json", None)
        return result


# --------------------------------------------------------------------------- comparison


def kind(value) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "object"}[type(value)]


def shape(value, path: str = "$", into: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Every path of the JSON value with the set of JSON types seen there (list items merged as [])."""
    into = {} if into is None else into
    into.setdefault(path, set()).add(kind(value))
    if isinstance(value, dict):
        for k, v in value.items():
            shape(v, f"{path}.{k}", into)
    elif isinstance(value, list):
        for v in value:
            shape(v, f"{path}[]", into)
    return into


def types(seen: set[str] | None) -> str:
    return "/".join(sorted(seen)) if seen else "<missing>"


def shape_diff(a: dict, b: dict) -> list[str]:
    sa, sb = shape(a), shape(b)
    lines = []
    for path in sorted(sa.keys() | sb.keys()):
        ta, tb = sa.get(path), sb.get(path)
        if ta != tb:
            lines.append(f"{path}: {types(ta)} vs {types(tb)}")
    return lines


def status_class(status: int) -> str:
    return f"{status // 100}xx" if status else "no answer"


def compare(case: dict, answers: dict[str, dict]) -> dict | None:
    names = sorted(answers)
    blame = []
    details = {}
    for left, right, who in (("A", "B", "launcher"), ("B", "C", "python set"), ("A", "C", None)):
        if left not in answers or right not in answers:
            continue
        ra, rb = answers[left], answers[right]
        diff = []
        if status_class(ra["status"]) != status_class(rb["status"]):
            diff.append(f"status {ra['status']} vs {rb['status']}")
        elif "json" in ra and "json" in rb:
            diff = shape_diff(ra["json"], rb["json"])
        if diff:
            details[f"{left}-{right}"] = diff
            if who:
                blame.append(who)
    if not details:
        return None
    if "B" not in answers and "A-C" in details:
        blame = ["launcher or python set (no arm B)"]
    elif not blame and "A-C" in details:
        blame = ["both (A and C differ)"]
    return {
        "route": f"{case['method']} {case['path']}",
        "case": case["case"],
        "sent": summarize(case),
        "status": {n: answers[n]["status"] for n in names},
        "errors": {
            n: (answers[n].get("text") or answers[n].get("error") or "")[:300]
            for n in names
            if answers[n]["status"] != 200
        },
        "diff": details,
        "blame": blame,
    }


def summarize(case: dict) -> str:
    if "query" in case:
        return "query " + json.dumps(case["query"])
    body = case.get("body")
    if body is None:
        return "no body"
    text = json.dumps(body, default=str)
    for image in (IMAGE, MASK, INFO_IMAGE):
        text = text.replace(image, "<png>")
    return text if len(text) < 300 else text[:297] + "..."


# --------------------------------------------------------------------------- main


def text_report(report: dict) -> str:
    out = [f"API differences: {report['summary']['differences']} of {report['summary']['requests']} requests"]
    for name, arm in report["arms"].items():
        out.append(
            f"  arm {name}: {arm['what']} ({arm['detail']}); startup {arm['starts']} s, requests {arm['seconds']} s"
        )
    by = report["summary"]["by_blame"]
    out.append("  blamed on: " + (", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "nothing"))
    out.append("")
    for d in report["differences"]:
        statuses = " ".join(f"{k}={v}" for k, v in d["status"].items())
        out.append(f"{d['route']} [{d['case']}] {statuses} -> {', '.join(d['blame'])}")
        out.append(f"    sent: {d['sent']}")
        for pair, lines in d["diff"].items():
            for line in lines[:12]:
                out.append(f"    {pair}: {line}")
            if len(lines) > 12:
                out.append(f"    {pair}: ... and {len(lines) - 12} more")
        for arm, error in d["errors"].items():
            out.append(f"    {arm} said: {' '.join(error.split())[:200]}")
        if d.get("why"):
            out.append(f"    kept because: {d['why']}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=env("SD_WEBUI_TEST_ROOT"), help="pristine upstream tree (arms A, B)")
    ap.add_argument("--venv", default=env("SD_WEBUI_TEST_VENV"), help="upstream's environment (arms A, B)")
    ap.add_argument("--launcher", default=env("SD_WEBUI_LAUNCHER"), help="launcher for that environment (arm B)")
    ap.add_argument("--nix-env", default=str(REPO / ".cache" / "nixpkgs-env"), help="run-e2e.sh's ENV_DIR")
    ap.add_argument("--nix-venv", help="the nixpkgs environment [NIX_ENV/venv]")
    ap.add_argument("--nix-root", help="the patched tree [NIX_ENV/webui]")
    ap.add_argument("--nix-launcher", help="the launcher for it [NIX_ENV/target/release/stable-diffusion-webui]")
    ap.add_argument("--arms", default="ABC", help="which arms to run (default ABC)")
    ap.add_argument("--cases", type=int, default=5, help="generated cases per route (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--routes", default="", help="only routes matching this regex")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per request")
    ap.add_argument("--annotate", type=Path, help='JSON {"route [case]": why} kept with remaining differences')
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json, OUT.txt (and A's OUT.openapi.json)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)

    nix = Path(args.nix_env)
    launcher = Path(args.launcher) if args.launcher else h.default_launcher()
    if not args.root or not args.venv or launcher is None:
        ap.error("--root, --venv and --launcher (or SD_WEBUI_TEST_ROOT/_VENV/SD_WEBUI_LAUNCHER) are needed")
    upstream = h.E2EConfig(Path(args.root).resolve(), Path(args.venv).absolute(), launcher.absolute())
    nixcfg = h.E2EConfig(
        Path(args.nix_root or nix / "webui").resolve(),
        Path(args.nix_venv or nix / "venv").absolute(),
        Path(args.nix_launcher or nix / "target" / "release" / h.LAUNCHER_NAME).absolute(),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="sdw-api-diff-"))
    ctx = argparse.Namespace(base=base, logs=h.artifacts_dir())
    # the tiny model needs numpy and safetensors: the upstream environment writes it
    subprocess.run(
        [str(upstream.python), str(h.TINY_MODEL_PY), str(base / "model")], check=True, stdout=subprocess.DEVNULL
    )
    ctx.ckpt = base / "model" / "tiny.safetensors"
    arms = {
        "A": Arm("A", ctx, upstream, upstream=True),
        "B": Arm("B", ctx, upstream, upstream=False),
        "C": Arm("C", ctx, nixcfg, upstream=False),
    }
    arms = {k: v for k, v in arms.items() if k in args.arms.upper()}
    details = {
        "A": f"{upstream.python} launch.py in a copy of {upstream.root}",
        "B": f"{upstream.launcher} --python-env {upstream.venv} --webui-root {upstream.root}",
        "C": f"{nixcfg.launcher} --python-env {nixcfg.venv} --webui-root {nixcfg.root}",
    }
    t_start = time.monotonic()
    answers: dict[str, list[dict]] = {}
    cases: list[dict] = []
    seconds: dict[str, float] = {}
    try:
        for name, arm in arms.items():
            print(f"arm {name}: {details[name]}", flush=True)
            try:
                arm.start()
            except AssertionError as error:
                print(f"arm {name} did not start: {error}", file=sys.stderr)
                return 2
            if not cases:  # the first arm's schema (A's, upstream's, unless --arms leaves A out)
                openapi = h.http("GET", arm.url + "/openapi.json").json()
                Path(f"{args.out}.openapi.json").write_text(json.dumps(openapi, indent=1))
                cases = build_cases(openapi, args.cases, args.seed, re.compile(args.routes))
                print(f"{len(cases)} requests per arm", flush=True)
            t0 = time.monotonic()
            answers[name] = []
            for i, case in enumerate(cases):
                answers[name].append(arm.send(case, args.timeout))
                if i % 50 == 49:
                    print(f"  {i + 1}/{len(cases)}", flush=True)
            seconds[name] = round(time.monotonic() - t0, 1)
            arm.stop()
    finally:
        for arm in arms.values():
            arm.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            for dirpath, dirnames, _ in os.walk(base):
                for d in dirnames:
                    os.chmod(os.path.join(dirpath, d), 0o755)
            shutil.rmtree(base, ignore_errors=True)

    annotations = json.loads(args.annotate.read_text()) if args.annotate else {}
    differences = []
    for i, case in enumerate(cases):
        found = compare(case, {name: answers[name][i] for name in answers})
        if found:
            why = annotations.get(f"{found['route']} [{found['case']}]") or annotations.get(found["route"])
            if why:
                found["why"] = why
            differences.append(found)
    by_blame: dict[str, int] = {}
    for d in differences:
        for b in d["blame"]:
            by_blame[b] = by_blame.get(b, 0) + 1
    report = {
        "arms": {
            n: {"what": ARM_NAMES[n], "detail": details[n], "starts": a.starts, "seconds": seconds.get(n)}
            for n, a in arms.items()
        },
        "options": {"cases": args.cases, "seed": args.seed, "routes": args.routes},
        "summary": {
            "requests": len(cases),
            "differences": len(differences),
            "by_blame": by_blame,
            "routes": sorted({d["route"] for d in differences}),
            "seconds": round(time.monotonic() - t_start, 1),
        },
        "differences": differences,
        "requests": [
            {
                **{k: v for k, v in c.items() if k != "body"},
                "sent": summarize(c),
                "status": {n: answers[n][i]["status"] for n in answers},
            }
            for i, c in enumerate(cases)
        ],
    }
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1, default=str))
    Path(f"{args.out}.txt").write_text(text_report(report))
    print(text_report(report)[:3000])
    print(f"wrote {args.out}.json and {args.out}.txt ({report['summary']['seconds']} s)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
