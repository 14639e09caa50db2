"""JSON Schema checks that tell a partner what to change, at the line that set the value.

jsonschema's own messages quote the offending value, which can be a whole chart's
worth of YAML (or a credential someone pasted in the wrong file), so messages are
rebuilt from the rule that failed and never include the value. Validators are
Draft 7, as helm uses, compiled once per schema content.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from cachetools import LRUCache
from jsonschema.exceptions import ValidationError, best_match

from bot.core.findings import Finding, error

# Keyed by the schema object's identity: schemas come from the content-addressed file
# cache, so one content is one object; the entry keeps the object alive, so its id is
# never reused while cached.
_validators: LRUCache[int, tuple[Any, jsonschema.Draft7Validator]] = LRUCache(64)
_lock = threading.Lock()
_REQUIRED = re.compile(r"^'(.+)' is a required property$")
_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One schema violation: where (a key path) and what to change."""

    path: tuple[Any, ...]
    message: str
    missing_key: str | None = None  # for `required`: the key that is missing


def validator_for(schema: Mapping[str, Any]) -> jsonschema.Draft7Validator:
    """A Draft 7 validator for `schema` (raises SchemaError if it is not a valid schema)."""
    with _lock:
        cached = _validators.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    with _lock:
        _validators[id(schema)] = (schema, validator)
    return validator


def dotted(path: tuple[Any, ...]) -> str:
    """A key path for people: `hubs[3].domain`, `prometheus.serverFiles["alerts.yml"]`."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        elif isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_/-]+", key):
            out += f".{key}" if out else key
        else:
            out += f"[{json.dumps(str(key))}]"
    return out or "(top level)"


def problems(
    validator: jsonschema.Draft7Validator, instance: Any, *, prefix: tuple[Any, ...] = ()
) -> Iterator[Problem]:
    """Every violation of `instance` (found at `prefix`), described without quoting values."""
    for err in validator.iter_errors(instance):
        yield from _describe(err, prefix)


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _describe(err: ValidationError, prefix: tuple[Any, ...]) -> Iterator[Problem]:
    path = (*prefix, *err.absolute_path)
    where = dotted(path)
    rule, expected = err.validator, err.validator_value
    if rule == "additionalProperties" and isinstance(err.instance, dict):
        known = set(err.schema.get("properties", {}))
        patterns = [re.compile(p) for p in err.schema.get("patternProperties", {})]
        for key in err.instance:
            if key not in known and not any(p.search(str(key)) for p in patterns):
                yield Problem(
                    (*path, key),
                    f"{dotted((*path, key))} is not a known setting here; "
                    "check its spelling and indentation",
                )
        return
    if rule == "required":
        match = _REQUIRED.match(err.message)
        key = match.group(1) if match else "?"
        yield Problem(path, f"{where} must set {key!r}", missing_key=key)
        return
    if rule in ("anyOf", "oneOf") and err.context:
        best = best_match(err.context)
        if (*prefix, *best.absolute_path) != path:
            yield from _describe(best, prefix)  # a problem deeper inside: point at it
            return
        options = [
            _expectation(e.validator, e.validator_value, e.instance)
            for e in err.context
            if (*prefix, *e.absolute_path) == path
        ]
        choices = "; or ".join(dict.fromkeys(o.removeprefix("must ") for o in options[:6]))
        yield Problem(path, f"{where} must {choices}")
        return
    yield Problem(path, f"{where} {_expectation(rule, expected, err.instance)}")


def _expectation(rule: str, expected: Any, instance: Any) -> str:
    """What the value should be, from the failed rule (never quoting the value itself)."""
    if rule == "type":
        types = expected if isinstance(expected, list) else [expected]
        return f"must be {' or '.join(_article(t) for t in types)}, not {_kind(instance)}"
    simple: dict[str, Callable[[Any], str]] = {
        "enum": lambda v: "must be one of " + ", ".join(json.dumps(x) for x in v[:12]),
        "const": lambda v: f"must be {json.dumps(v)}",
        "pattern": lambda v: f"must match the pattern {v}",
        "minLength": lambda v: f"must be at least {v} characters long",
        "maxLength": lambda v: f"must be at most {v} characters long",
        "minItems": lambda v: f"must have at least {v} items",
        "maxItems": lambda v: f"must have at most {v} items",
        "uniqueItems": lambda v: "must not repeat items",
        "minimum": lambda v: f"must be at least {v}",
        "maximum": lambda v: f"must be at most {v}",
        "exclusiveMinimum": lambda v: f"must be more than {v}",
        "exclusiveMaximum": lambda v: f"must be less than {v}",
        "multipleOf": lambda v: f"must be a multiple of {v}",
        "minProperties": lambda v: f"must have at least {v} keys",
        "maxProperties": lambda v: f"must have at most {v} keys",
        "format": lambda v: f"must be a valid {v}",
        "propertyNames": lambda v: "has a key that is not allowed here",
    }
    if rule == "required" and isinstance(instance, dict) and isinstance(expected, list):
        missing = [k for k in expected if k not in instance]
        return "must set " + ", ".join(repr(k) for k in missing)
    if rule in simple:
        return simple[rule](expected)
    return f"must satisfy the schema's {rule!r} rule"


def _article(json_type: str) -> str:
    names = {"object": "a mapping", "array": "a list", "null": "null", "integer": "an integer"}
    return names.get(json_type, f"a {json_type}")


def findings_at(
    found: Iterator[Problem],
    locate: Callable[[Problem], tuple[str, int | None]],
    *,
    rule: str,
    suffix: str = "",
) -> list[Finding]:
    """Findings for problems, each at the file and line `locate` gives."""
    out = []
    for problem in found:
        path, line = locate(problem)
        out.append(error(path, line, rule, problem.message + suffix))
    return out
