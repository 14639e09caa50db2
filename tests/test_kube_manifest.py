"""The deploy Job manifest, names and labels: pure functions, no server."""

from __future__ import annotations

import re

import pytest
from kubernetes.aio import client

from bot.core.settings import KubernetesSettings
from bot.deploys.executor import DeployJob
from bot.deploys.kubeapi import check_job_template
from bot.deploys.kubemanifest import (
    ANNOTATION_JOB,
    LABEL_HUB,
    LABEL_REPO,
    JobTemplateError,
    build_job,
    decode_job,
    encode_job,
    job_name,
    label_value,
    lease_name,
    repo_selector,
)

LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
TEMPLATE = {
    "spec": {"template": {"spec": {"containers": [{"name": "deploy", "image": "alpine:3.20"}]}}}
}


def make_job(**kw: object) -> DeployJob:
    base: dict[str, object] = {
        "id": "r1-c-staging",
        "repo": "2i2c-org/infrastructure",
        "cluster": "2i2c-aws-us",
        "hub": "staging",
        "sha": "a" * 40,
        "command": "deployer deploy 2i2c-aws-us staging",
        "timeout_seconds": 600.0,
        "labels": {"delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "pr": "42"},
        "env": {"HELM_DEBUG": "1"},
        "secret_files": ("config/clusters/2i2c-aws-us/enc-staging.secret.values.yaml",),
    }
    base.update(kw)
    return DeployJob(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "staging",
        "2i2c-org/infrastructure",
        "a" * 63,
        "a" * 64,
        "-leading-dash",
        "émoji 🚀 hub",
        "",
        "___",
        "x" * 300,
    ],
)
def test_label_values_are_valid_and_keep_valid_input(text: str) -> None:
    value = label_value(text)
    assert len(value) <= 63 and LABEL_VALUE.match(value)
    if len(text) <= 63 and LABEL_VALUE.match(text):
        assert value == text


def test_label_values_of_different_inputs_differ() -> None:
    inputs = ["a/b.c", "a.b/c", "a_b/c", "a/b_c", "x" * 70, "x" * 71]
    assert len({label_value(t) for t in inputs}) == len(inputs)


@pytest.mark.parametrize(
    ("cluster", "hub"),
    [("2i2c-aws-us", "staging"), ("UPPER_case.cluster", None), ("c" * 80, "h" * 80), ("-", "-")],
)
def test_names_are_dns_labels_and_unique_per_id_and_repo(cluster: str, hub: str | None) -> None:
    a = make_job(cluster=cluster, hub=hub)
    names = {
        job_name(a),
        job_name(make_job(cluster=cluster, hub=hub, id="r2")),
        job_name(make_job(cluster=cluster, hub=hub, repo="other/repo")),
    }
    assert len(names) == 3
    for name in [*names, lease_name(a.repo, cluster, hub)]:
        assert len(name) <= 63 and DNS_1123.match(name), name
    assert job_name(a) == job_name(make_job(cluster=cluster, hub=hub))  # stable: restarts


def test_lease_names_differ_per_target_and_repo() -> None:
    names = {
        lease_name("o/r", "c", "staging"),
        lease_name("o/r", "c", "prod"),
        lease_name("o/r", "c", None),
        lease_name("o/other", "c", "staging"),
    }
    assert len(names) == 4


def test_build_job_merges_template_and_owns_its_fields() -> None:
    template = {
        "metadata": {"name": "ignored", "labels": {"team": "infra"}, "annotations": {"a": "b"}},
        "spec": {
            "backoffLimit": 6,
            "template": {
                "metadata": {"labels": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "serviceAccountName": "deployer",
                    "containers": [
                        {"name": "side", "image": "busybox"},
                        {
                            "name": "deploy",
                            "image": "deployer:1",
                            "env": [
                                {"name": "HUBBOT_SHA", "value": "spoofed"},
                                {
                                    "name": "TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                                },
                            ],
                        },
                    ],
                },
            },
        },
    }
    job = make_job()
    manifest = build_job(job, template, namespace="ns", ttl_seconds=100, deadline_seconds=630)
    assert manifest["metadata"]["name"] == job_name(job)
    assert manifest["metadata"]["namespace"] == "ns"
    labels = manifest["metadata"]["labels"]
    assert labels["team"] == "infra" and labels[LABEL_REPO] == label_value(job.repo)
    assert labels["hubbot.dev/delivery"] == job.labels["delivery"]
    assert manifest["metadata"]["annotations"]["a"] == "b"
    assert decode_job(manifest["metadata"]["annotations"]) == job
    spec = manifest["spec"]
    assert (spec["backoffLimit"], spec["ttlSecondsAfterFinished"]) == (0, 100)
    assert spec["activeDeadlineSeconds"] == 630
    pod = spec["template"]
    assert pod["metadata"]["labels"][LABEL_HUB] == "staging"
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert pod["spec"]["restartPolicy"] == "Never"
    side, deploy = pod["spec"]["containers"]
    assert "command" not in side  # only the deploy container gets the default command
    assert deploy["command"][:2] == ["/bin/sh", "-c"]
    env = {e["name"]: e for e in deploy["env"]}
    assert env["HUBBOT_SHA"]["value"] == job.sha  # the template cannot spoof hubbot's values
    assert env["HUBBOT_COMMAND"]["value"] == job.command
    assert env["HUBBOT_HUB"]["value"] == "staging" and env["HELM_DEBUG"]["value"] == "1"
    assert env["HUBBOT_SECRET_FILES"]["value"] == job.secret_files[0]
    assert "valueFrom" in env["TOKEN"]  # secrets stay references
    assert template["spec"]["backoffLimit"] == 6  # the template itself is untouched
    assert client.V1Job.from_dict(manifest) is not None


def test_support_release_has_empty_hub_label_and_env() -> None:
    manifest = build_job(
        make_job(hub=None), TEMPLATE, namespace="n", ttl_seconds=1, deadline_seconds=1
    )
    assert manifest["metadata"]["labels"][LABEL_HUB] == ""
    env = {
        e["name"]: e["value"] for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["HUBBOT_HUB"] == "" and env["HUBBOT_TARGET"] == "2i2c-aws-us/support"


def test_a_template_command_is_kept() -> None:
    template = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "x", "image": "i", "command": ["/entry.sh"]}]}
            }
        }
    }
    manifest = build_job(make_job(), template, namespace="n", ttl_seconds=1, deadline_seconds=1)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["command"] == ["/entry.sh"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ({}, "containers must list the deploy container"),
        ({"spec": {"template": {"spec": {"containers": []}}}}, "containers must list"),
        ({"spec": {"template": {"spec": {"containers": [{"name": "d"}]}}}}, "needs an image"),
        ({"kind": "Deployment"}, "must be a batch/v1 Job"),
        ({"spec": []}, "spec must be a mapping"),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "d", "image": "i", "imagePullPolcy": "Always"}]
                        }
                    }
                }
            },
            "unknown fields: spec.template.spec.containers\\[0\\].imagePullPolcy",
        ),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "d", "image": 5}]}}}},
            "not a valid batch/v1 Job: .*image",
        ),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "d", "image": "i"}],
                            "serviceAcountName": "typo",
                        }
                    }
                }
            },
            "serviceAcountName",
        ),
    ],
)
def test_bad_templates_are_refused_up_front(template: dict[str, object], message: str) -> None:
    with pytest.raises(JobTemplateError, match=message):
        check_job_template(KubernetesSettings(job_template=template))


@pytest.mark.parametrize(
    "annotations",
    [
        None,
        {},
        {ANNOTATION_JOB: "not json"},
        {ANNOTATION_JOB: '{"v": 2}'},
        {ANNOTATION_JOB: '{"v": 1, "id": 3}'},
        {ANNOTATION_JOB: encode_job(make_job()).replace('"staging"', "7")},
        {ANNOTATION_JOB: encode_job(make_job()).replace('"pr": "42"', '"pr": 42')},
        {
            ANNOTATION_JOB: encode_job(make_job()).replace(
                '"secret_files": [', '"secret_files": [1,'
            )
        },
    ],
)
def test_unreadable_annotations_give_none(annotations: dict[str, str] | None) -> None:
    assert decode_job(annotations) is None


def test_selector_scopes_to_repo() -> None:
    assert repo_selector(None) == "app.kubernetes.io/managed-by=hubbot"
    assert repo_selector("o/r").endswith(f",hubbot.dev/repo={label_value('o/r')}")
