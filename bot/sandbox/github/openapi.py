"""Checking the double against GitHub's official REST description (`@octokit/openapi`).

Two uses:
- `OpenAPIChecker` validates every request (and response) the double sees with
  openapi-core; tests plug it in so a request the real API would reject fails the test.
  openapi-core is a dev dependency: it is imported only when a checker is built.
- `extract_operations` pulls the request body schemas and doc links of the endpoints the
  double serves into `operations.json`, shipped in the package, so the double answers
  422 to invalid bodies even without the description. Regenerate it with
  `python -m bot.sandbox.github.openapi .cache/npm/openapi/generated/api.github.com.json`.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from bot.sandbox.github.http import Exchange

GITHUB_SERVER = "https://api.github.com"
NOT_GITHUB = ("/_sandbox", "/codeload/")  # the double's own routes: not in the description
_REF = "#/components/schemas/"


def load_spec(path: str | Path) -> dict[str, Any]:
    """The REST description as a dict."""
    with open(path, encoding="utf-8") as handle:
        spec: dict[str, Any] = json.load(handle)
    return spec


def _json_schema(node: Any, schemas: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema: refs inlined, `nullable` as a null type."""
    if isinstance(node, list):
        return [_json_schema(x, schemas, seen) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].removeprefix(_REF)
        if name in seen:
            return {}  # a recursive schema: accept anything below the cycle
        return _json_schema(schemas[name], schemas, (*seen, name))
    out = {
        k: _json_schema(v, schemas, seen)
        for k, v in node.items()
        if k not in ("description", "example", "examples", "nullable", "title", "x-github")
    }
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif "enum" in out:
            out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    if "enum" in out and isinstance(out.get("type"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def extract_operations(spec: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """Doc links and request body schemas for `METHOD /path/{template}` keys."""
    schemas = spec["components"]["schemas"]
    operations: dict[str, Any] = {}
    for key in sorted(set(keys)):
        method, path = key.split(" ", 1)
        op = spec["paths"].get(path, {}).get(method.lower())
        if op is None:
            raise KeyError(f"{key} is not in the REST description")
        entry: dict[str, Any] = {
            "operation_id": op["operationId"],
            "doc": op.get("externalDocs", {}).get("url", "https://docs.github.com/rest"),
        }
        body = op.get("requestBody")
        if body is not None:
            schema = body["content"]["application/json"]["schema"]
            entry["body"] = _json_schema(schema, schemas)
            entry["body_required"] = bool(body.get("required"))
        operations[key] = entry
    info = spec.get("info", {})
    return {
        "source": f"{info.get('title', '')} {info.get('version', '')}".strip(),
        "operations": operations,
    }


def served_operations() -> list[str]:
    """`METHOD /path` of every GitHub REST route the double serves."""
    from aiohttp import web

    from bot.sandbox.github import app as sandbox_app

    application = web.Application()
    for module in sandbox_app.REST_MODULES:
        application.add_routes(module.routes)
    keys = []
    for route in application.router.routes():
        resource = route.resource
        if resource is None or route.method in ("HEAD", "*"):
            continue
        if resource.canonical.startswith(NOT_GITHUB):
            continue
        keys.append(f"{route.method} {resource.canonical}")
    return sorted(set(keys))


def fix_description(node: Any) -> int:
    """Work around places where openapi-core and the description disagree; returns how many.

    GitHub's real answers are what the double copies, so the checker adapts, not the double:
    - a `discriminator` mapping `array` (contents of a folder): an array has no property
      to discriminate on, so openapi-core rejects every folder listing;
    - `nullable` with `enum` (a check run's `conclusion` while in progress): openapi-core
      applies the enum before nullability, so `null` must be listed;
    - `nullable` with `oneOf`/`anyOf` and no `type` (a commit's `author` when the email
      maps to no account): openapi-core only honours `nullable` next to a `type`, so a
      `null` alternative is added;
    - an installation `account` inlined as `allOf` of a user and an enterprise (in
      `GET /app/installations`): the component says `anyOf`, and an account is either.
    """
    fixed = 0
    if isinstance(node, list):
        return sum(fix_description(x) for x in node)
    if not isinstance(node, dict):
        return 0
    mapping = (
        node.get("discriminator", {}).get("mapping", {})
        if isinstance(node.get("discriminator"), dict)
        else {}
    )
    if "array" in mapping:
        del node["discriminator"]
        fixed += 1
    if node.get("nullable") and isinstance(node.get("enum"), list) and None not in node["enum"]:
        node["enum"].append(None)
        fixed += 1
    titles = {m.get("title") for m in node.get("allOf", []) if isinstance(m, dict)}
    if titles == {"Simple User", "Enterprise"}:
        node["anyOf"] = node.pop("allOf")
        fixed += 1
    for key in ("oneOf", "anyOf"):
        if node.get("nullable") and "type" not in node and isinstance(node.get(key), list):
            node[key].append({"type": "object", "nullable": True, "enum": [None]})
            fixed += 1
    return fixed + sum(fix_description(v) for v in node.values())


class _Request:
    """An openapi-core request built from a recorded exchange, addressed to api.github.com."""

    def __init__(self, exchange: Exchange):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = GITHUB_SERVER
        self.path = exchange.path
        if exchange.template is not None:
            # The matched template, so parameters holding slashes (contents paths, refs,
            # `base...head`) are checked as values instead of breaking path matching.
            self.path_pattern = exchange.template
        self.method = exchange.method.lower()
        self.body = exchange.request_body or None
        headers = Headers(list(exchange.request_headers.items()))
        self.content_type = headers.get("Content-Type", "application/json").lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qsl(exchange.query, keep_blank_values=True)),
            header=headers,
            cookie=ImmutableMultiDict(),
            path=dict(exchange.path_params),
        )


class _Response:
    def __init__(self, exchange: Exchange):
        from werkzeug.datastructures import Headers

        self.status_code = exchange.status
        self.headers = Headers(list(exchange.response_headers.items()))
        self.content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        self.data = exchange.response_body


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _explain(exc: Exception) -> str:
    """One line: the error type and the most relevant schema errors with their JSON paths."""
    from jsonschema.exceptions import ValidationError, best_match

    errors = [
        e
        for e in getattr(exc.__cause__, "schema_errors", None) or ()
        if isinstance(e, ValidationError)
    ]
    if not errors:
        return f"{type(exc).__name__}: {_short(str(exc))}"
    best = best_match(errors)
    leaves = [best]
    while leaves[0].context:
        leaves = [best_match(leaves[0].context)]
    where = "/".join(str(p) for p in leaves[0].absolute_path) or "<root>"
    return f"{type(exc).__name__}: at {where}: {_short(leaves[0].message)}"


class OpenAPIChecker:
    """Validates exchanges with openapi-core against GitHub's REST description."""

    def __init__(self, spec: dict[str, Any] | str | Path, *, responses: bool = True):
        from openapi_core import OpenAPI
        from openapi_core.configurations import Config

        started = time.perf_counter()
        raw = load_spec(spec) if isinstance(spec, str | Path) else copy.deepcopy(spec)
        self.fixes = fix_description(raw)
        # Validating the description itself takes ~37 s; it is GitHub's, so skip that.
        self._openapi = OpenAPI.from_dict(raw, config=Config(spec_validator_cls=None))
        self.responses = responses
        self.load_seconds = time.perf_counter() - started

    def check_request(self, exchange: Exchange) -> list[str]:
        """Why api.github.com would reject this request (empty when it would not)."""
        from openapi_core.exceptions import OpenAPIError

        if exchange.path.startswith(NOT_GITHUB):
            return []
        try:
            self._openapi.validate_request(_Request(exchange))
        except OpenAPIError as exc:
            return [f"request {exchange.method} {_where(exchange)}: {_explain(exc)}"]
        return []

    def check_response(self, exchange: Exchange) -> list[str]:
        """How a 2xx JSON response differs from the description (empty when it does not)."""
        from openapi_core.exceptions import OpenAPIError

        if (
            not self.responses
            or exchange.path.startswith(NOT_GITHUB)
            or not 200 <= exchange.status < 300
            or not exchange.response_body
            or "json" not in exchange.response_headers.get("Content-Type", "")
        ):
            return []
        try:
            self._openapi.validate_response(_Request(exchange), _Response(exchange))
        except OpenAPIError as exc:
            return [
                f"response {exchange.status} to {exchange.method} {_where(exchange)}: "
                f"{_explain(exc)}"
            ]
        return []


def _where(exchange: Exchange) -> str:
    return exchange.path + (f"?{exchange.query}" if exchange.query else "")


def main(argv: list[str] | None = None) -> int:
    """Regenerate `operations.json` from a REST description file."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bot.sandbox.github.openapi api.github.com.json", file=sys.stderr)
        return 2
    extracted = extract_operations(load_spec(args[0]), served_operations())
    target = Path(__file__).with_name("operations.json")
    target.write_text(json.dumps(extracted, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(extracted['operations'])} operations to {target}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
