"""Pure helpers of the Kubernetes API double: times, Status objects, selectors, validation.

Everything here works on plain JSON-like dicts, the way the API server sees objects on the
wire. Rules follow the Kubernetes API conventions:
https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
MAX_ANNOTATIONS_BYTES = 256 * 1024


class ApiError(Exception):
    """An API answer other than success, carried as a Kubernetes `Status`."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> JSON:
        """The `Status` object sent as the response body."""
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str, details: JSON | None = None) -> JSON:
    """A complete `meta/v1 Status` object for an error (or a successful delete)."""
    body: JSON = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    if code < 400:
        del body["message"], body["reason"]
    return body


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


def rfc3339(when: dt.datetime) -> str:
    """A `metav1.Time`: seconds precision, `Z` suffix."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(when: dt.datetime) -> str:
    """A `metav1.MicroTime`: microseconds, `Z` suffix."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    """A `Time` or `MicroTime` string as an aware datetime."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def deep_copy(obj: JSON) -> JSON:
    """A copy that shares nothing with `obj` (stored objects are never handed out)."""
    return copy.deepcopy(obj)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic merge of maps: no list merging)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---- selectors ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label or field selector."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this term."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=" and "notin"


_SET_TERM = re.compile(r"\s*([^\s!=,()]+)\s+(in|notin)\s*\(([^)]*)\)\s*\Z")
_EQ_TERM = re.compile(r"\s*([^\s!=,()]+)\s*(==|=|!=)\s*([^\s!=,()]*)\s*\Z")
_EXISTS_TERM = re.compile(r"\s*(!?)\s*([^\s!=,()]+)\s*\Z")


def parse_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a label selector (`a=b,c!=d,e in (f,g),!h`); raises ApiError 400 if malformed."""
    if not text or not text.strip():
        return ()
    terms: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return tuple(_parse_term(term, text) for term in terms)


def _parse_term(term: str, whole: str) -> Requirement:
    if m := _SET_TERM.match(term):
        values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
        return Requirement(m.group(1), m.group(2), values)
    if m := _EQ_TERM.match(term):
        return Requirement(m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),))
    if m := _EXISTS_TERM.match(term):
        return Requirement(m.group(2), "!exists" if m.group(1) else "exists")
    raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r} in {whole!r}")


def selector_matches(selector: tuple[Requirement, ...], labels: Mapping[str, str]) -> bool:
    """Whether every term matches."""
    return all(term.matches(labels) for term in selector)


FIELD_GETTERS: dict[str, Callable[[JSON], str]] = {
    "metadata.name": lambda o: str(o.get("metadata", {}).get("name", "")),
    "metadata.namespace": lambda o: str(o.get("metadata", {}).get("namespace", "")),
    "status.phase": lambda o: str(o.get("status", {}).get("phase", "")),
}


def parse_field_selector(text: str | None, allowed: tuple[str, ...]) -> Callable[[JSON], bool]:
    """A predicate for a field selector; unsupported fields are a 400, as on a real server."""
    terms = parse_selector(text)
    for term in terms:
        if term.key not in allowed:
            raise ApiError(
                400, "BadRequest", f'field label not supported: "{term.key}"', {"kind": "field"}
            )
        if term.op not in ("=", "!="):
            raise ApiError(400, "BadRequest", f"invalid field selector operator in {text!r}")

    def predicate(obj: JSON) -> bool:
        fields = {key: FIELD_GETTERS[key](obj) for key in allowed}
        return selector_matches(terms, fields)

    return predicate


# ---- validation --------------------------------------------------------------------------


def invalid(kind: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """A 422 Invalid error listing every cause, as the API server reports them."""
    text = "; ".join(f"{field}: {msg}" for field, msg in causes)
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {text}',
        {
            "name": name,
            "kind": kind.split(".")[0],
            "causes": [
                {"reason": "FieldValueInvalid", "message": msg, "field": field}
                for field, msg in causes
            ],
        },
    )


def check_qualified_name(key: str) -> str | None:
    """Why a label or annotation key is invalid, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix)):
        return f"prefix part of {key!r} must be a DNS subdomain"
    if not name or len(name) > 63 or not LABEL_NAME.match(name):
        return f"name part of {key!r} must be at most 63 of [A-Za-z0-9._-], alphanumeric at ends"
    return None


def check_meta(obj: JSON, field: str = "metadata") -> list[tuple[str, str]]:
    """Problems with an object's labels and annotations."""
    causes: list[tuple[str, str]] = []
    meta = obj.get("metadata") or {}
    for kind in ("labels", "annotations"):
        value = meta.get(kind)
        if value is not None and (
            not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
        ):
            return [(f"{field}.{kind}", "must be a map of strings to strings")]
    for key, value in (meta.get("labels") or {}).items():
        if why := check_qualified_name(key):
            causes.append((f"{field}.labels", why))
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append(
                (f"{field}.labels", f"{value!r}: a label value must be at most 63 characters")
            )
    annotations = meta.get("annotations") or {}
    for key in annotations:
        if why := check_qualified_name(key):
            causes.append((f"{field}.annotations", why))
    size = sum(len(k) + len(str(v)) for k, v in annotations.items())
    if size > MAX_ANNOTATIONS_BYTES:
        causes.append((f"{field}.annotations", "Too long: must have at most 262144 bytes"))
    return causes


def check_name(name: str, *, max_len: int = 253) -> str | None:
    """Why an object name is invalid, or None."""
    if not name:
        return "name or generateName is required"
    if len(name) > max_len:
        return f"must be no more than {max_len} characters"
    if not DNS_SUBDOMAIN.match(name):
        return "a lowercase RFC 1123 subdomain must consist of [a-z0-9-.], alphanumeric at ends"
    return None
