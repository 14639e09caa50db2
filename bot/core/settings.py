"""Repository settings (`hubbot.yaml`), validated once into a typed object.

Every key is optional and defaults to the layout of 2i2c-org/infrastructure.
Unknown keys are an error. The JSON schema ships in `schemas/settings.schema.json`.
The GitHub side always reads this file from the default branch, never from a PR.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from bot.core.findings import Finding, error
from bot.core.yamlload import Loaded, YamlProblem, load_yaml

SETTINGS_PATH = "hubbot.yaml"

DEFAULT_SECRET_KEYS = (
    "client_secret",
    "password",
    "token",
    "api_token",
    "apiToken",
    "api_key",
    "apiKey",
    "secret_key",
    "secretKey",
    "access_key",
    "accessKey",
    "private_key",
    "privateKey",
    "auth_token",
    "authToken",
    "secretToken",
    "cookieSecret",
    "cookie_secret",
    "aws_secret_access_key",
    "credentials",
)

# 2i2c's deployer: VARS_2I2C_* for its values.jsonnet files (see the fixture's SOURCE.md).
DEFAULT_EXT_VARS: dict[str, tuple[str, ...]] = {
    "VARS_2I2C_CLUSTER_NAME": ("{cluster.aws.clusterName}", "{cluster.name}"),
    "VARS_2I2C_PROVIDER": ("{cluster.provider}",),
    "VARS_2I2C_ACCOUNT_ID": ("{cluster.aws.account}", "{cluster.gcp.project}", "None"),
    "VARS_2I2C_HUB_NAME": ("{hub.name}",),
    "VARS_2I2C_HUB_DOMAIN": ("{hub.domain}",),
}

DEFAULT_COMMAND = (
    "helm upgrade --install --wait --namespace {namespace} --create-namespace "
    "{hub} {chart_path} {values_flags}"
)
DEFAULT_SUPPORT_COMMAND = (
    "helm upgrade --install --wait --namespace support --create-namespace "
    "support {chart_path} {values_flags}"
)


@dataclass(frozen=True, slots=True)
class Labels:
    """PR label names that steer the plan."""

    skip_deploy: str = "deployer:skip-deploy"
    skip_deploy_hubs: str = "deployer:skip-deploy-hubs"
    deploy_all_hubs: str = "deployer:deploy-hubs"
    deploy_all_support: str = "deployer:deploy-support"


@dataclass(frozen=True, slots=True)
class JsonnetSettings:
    """How values.jsonnet files are rendered."""

    ext_vars: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_EXT_VARS))
    timeout_seconds: float = 10.0
    max_output_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """The Kubernetes executor: where Jobs run and the Job template."""

    namespace: str = "hubbot"
    job_template: Mapping[str, Any] = field(default_factory=dict)
    ttl_seconds_after_finished: int = 3600


@dataclass(frozen=True, slots=True)
class DeploySettings:
    """How deploys run."""

    executor: str = "local"
    command: str = DEFAULT_COMMAND
    support_command: str = DEFAULT_SUPPORT_COMMAND
    namespace: str = "{hub}"
    decrypt_secrets: bool = True
    health_check: str | None = None
    health_check_attempts: int = 3
    health_check_timeout_seconds: float = 60.0
    timeout_seconds: float = 1800.0
    max_parallel: int = 10
    max_parallel_per_cluster: int = 3
    claim_hours: float = 24.0
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated repository settings."""

    clusters_dir: str = "config/clusters"
    charts_dir: str = "helm-charts"
    support_chart: str = "support"
    staging_hub_pattern: str = "staging"
    redeploy_all_paths: tuple[str, ...] = ("pyproject.toml", "requirements.txt")
    ignored_paths: tuple[str, ...] = ("config/clusters/templates/**",)
    labels: Labels = field(default_factory=Labels)
    cluster_file_changes: str = "changed-hubs"
    skip_unchanged_values: bool = True
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    jsonnet: JsonnetSettings = field(default_factory=JsonnetSettings)
    partners: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deploy: DeploySettings = field(default_factory=DeploySettings)

    def is_staging(self, hub_name: str) -> bool:
        """Whether a hub of this name is a staging hub."""
        return _compiled(self.staging_hub_pattern).search(hub_name) is not None

    def is_ignored(self, path: str) -> bool:
        """Whether `path` matches an ignored pattern."""
        return any(glob_match(path, pattern) for pattern in self.ignored_paths)

    def redeploys_all(self, path: str) -> bool:
        """Whether a change to `path` redeploys every hub."""
        return any(glob_match(path, pattern) for pattern in self.redeploy_all_paths)

    @property
    def support_chart_dir(self) -> str:
        """The support chart's folder."""
        return f"{self.charts_dir}/{self.support_chart}"


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a glob where `**` crosses folders and `*` does not."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(path: str, pattern: str) -> bool:
    """Whether `path` matches a glob pattern (`**` crosses folders)."""
    if "*" not in pattern and "?" not in pattern and "[" not in pattern:
        return path == pattern or path.startswith(pattern.rstrip("/") + "/")
    if "[" in pattern:
        return fnmatch.fnmatchcase(path, pattern)
    return _glob_regex(pattern).match(path) is not None


@functools.cache
def settings_schema() -> dict[str, Any]:
    """The JSON schema of hubbot.yaml, as shipped in the package."""
    text = resources.files("bot.core").joinpath("schemas/settings.schema.json").read_text()
    return dict(json.loads(text))


def parse_settings(
    data: bytes | None, *, path: str = SETTINGS_PATH
) -> tuple[Settings, list[Finding]]:
    """Settings from the bytes of hubbot.yaml (None: all defaults), and any findings.

    On an error, the defaults are returned with the findings, so callers can still
    report everything else; they must treat the findings as fatal for deploys.
    """
    if data is None:
        return Settings(), []
    try:
        loaded = load_yaml(data)
    except YamlProblem as exc:
        return Settings(), [error(path, exc.line, exc.rule, exc.message)]
    raw = loaded.data if loaded.data is not None else {}
    # here, not at the top: jsonschema is slow to import and most repositories have no hubbot.yaml
    from bot.core.schemacheck import problems, validator_for

    found = list(problems(validator_for(settings_schema()), raw))
    if found:
        return Settings(), [
            error(path, loaded.line_of(p.path), "settings-schema", p.message) for p in found
        ]
    findings: list[Finding] = []
    pattern = raw.get("staging_hub_pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            findings.append(
                error(
                    path,
                    loaded.line_of(("staging_hub_pattern",)),
                    "settings-schema",
                    f"staging_hub_pattern is not a valid regular expression: {exc}",
                )
            )
            return Settings(), findings
    findings += _template_findings(raw, loaded, path)
    if findings:
        return Settings(), findings
    return build_settings(raw), findings


TEMPLATE_KEYS = ("command", "support_command", "namespace", "health_check")


def _template_findings(raw: Mapping[str, Any], loaded: Loaded, path: str) -> list[Finding]:
    """A finding for each deploy template that names an unknown placeholder or is malformed."""
    from bot.deploys.jobs import check_template  # pure; imported late to avoid a cycle

    deploy = raw.get("deploy") or {}
    found = []
    for key in TEMPLATE_KEYS:
        template = deploy.get(key)
        if not isinstance(template, str):
            continue
        for problem in check_template(template):
            line = loaded.line_of(("deploy", key))
            found.append(error(path, line, "settings-template", f"deploy.{key}: {problem}"))
    return found


def build_settings(raw: Mapping[str, Any]) -> Settings:
    """A Settings object from already-validated plain data."""
    kw: dict[str, Any] = {}
    for key in (
        "clusters_dir",
        "charts_dir",
        "support_chart",
        "staging_hub_pattern",
        "cluster_file_changes",
        "skip_unchanged_values",
    ):
        if key in raw:
            kw[key] = raw[key]
    for key in ("clusters_dir", "charts_dir"):
        if key in kw:
            kw[key] = kw[key].strip("/")
    for key in ("redeploy_all_paths", "ignored_paths", "secret_keys"):
        if key in raw:
            kw[key] = tuple(raw[key])
    if "labels" in raw:
        kw["labels"] = Labels(**raw["labels"])
    if "jsonnet" in raw:
        j = dict(raw["jsonnet"])
        if "ext_vars" in j:
            j["ext_vars"] = {k: tuple(v) for k, v in j["ext_vars"].items()}
        kw["jsonnet"] = JsonnetSettings(**j)
    if "partners" in raw:
        kw["partners"] = {k: tuple(v) for k, v in raw["partners"].items()}
    if "deploy" in raw:
        d = dict(raw["deploy"])
        if "kubernetes" in d:
            d["kubernetes"] = KubernetesSettings(**d["kubernetes"])
        kw["deploy"] = DeploySettings(**d)
    return Settings(**kw)
