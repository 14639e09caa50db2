"""Helm's rules for combining values, reproduced exactly.

Helm builds a release's values in two steps (helm/pkg/cli/values/options.go and
helm/pkg/chartutil/coalesce.go):

1. `merge_user`: the `--values` files are merged in order. Maps merge deeply; a
   list, a scalar or a `null` replaces what was there. A `null` is kept.
2. `coalesce`: those user values are laid over the chart's defaults. A user `null`
   deletes the default at that key; a user `null` where the chart has no default
   stays `null`. A chart's own `values.yaml` is coalesced over its local
   dependencies' defaults (nested under each dependency's name or alias) the same way.

Both return new mappings and never modify their inputs; untouched subtrees are
shared with the inputs, so treat every result as read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_user(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`overlay` merged onto `base` as helm merges `-f` files: maps deep, the rest replaced."""
    out = dict(base)
    for key, value in overlay.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            out[key] = merge_user(below, value)
        else:
            out[key] = value
    return out


def coalesce(top: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """`top` laid over `defaults` as helm coalesces values: a `null` in `top` deletes a default."""
    out = dict(top)
    for key, default in defaults.items():
        if key in out:
            value = out[key]
            if value is None:
                del out[key]
            elif isinstance(value, Mapping) and isinstance(default, Mapping):
                out[key] = coalesce(value, default)
            # otherwise the user's value wins (helm warns when a map meets a scalar)
        else:
            out[key] = default
    return out


def nest(prefix: tuple[str, ...], data: Any) -> Any:
    """`data` placed under the key path `prefix`."""
    for key in reversed(prefix):
        data = {key: data}
    return data


def get_path(data: Any, path: tuple[Any, ...]) -> tuple[bool, Any]:
    """(found, value) of `path` in `data`, walking mappings and lists."""
    node = data
    for key in path:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return False, None
    return True, node
