"""The deployment files, each checked by the real tool that will read it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.web.test_metrics import MASTER_METRICS, SLAVE_METRICS

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "SECRET_KEY_FILE": "/run/keys/secret_key",
    "CLUSTER_KEY_FILE": "/run/keys/cluster_key",
    "TEACHER_PASSWORD_FILE": "/run/keys/teacher_password",
    "METRICS_TOKEN_FILE": "/run/keys/metrics_token",
}


def compose_config(*files: str, **env: str) -> dict[str, object]:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is not installed: run `make test`, which installs it")
    args = [tool]
    for name in files:
        args += ["-f", str(ROOT / name)]
    run = subprocess.run(
        [*args, "config"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **SECRETS, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return dict(yaml.safe_load(run.stdout))


def test_compose_scales_slaves_with_limits_and_an_internal_control_network() -> None:
    config = compose_config("docker-compose.yml")
    services = config["services"]
    assert isinstance(services, dict)
    slave = services["slave"]
    # No fixed host ports and no container_name: `--scale slave=5` works.
    assert "ports" not in slave and "container_name" not in slave
    assert slave["environment"]["MASTER_URL"] == "http://master:8000"
    assert slave["environment"]["PUBLIC_NETWORK"] == "172.28.0.0/16"
    limits = slave["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) == 2.0 and limits["memory"] == "2G"
    assert set(slave["networks"]) == {"control", "viewers"}
    assert config["networks"]["control"]["internal"] is True  # type: ignore[index]
    assert services["master"]["environment"]["MODE"] == "master"
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]


def test_compose_refuses_to_start_without_secrets() -> None:
    tool = shutil.which("docker-compose") or "docker-compose"
    run = subprocess.run(
        [tool, "config"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "SECRET_KEY" in run.stderr


def test_per_pc_and_lan_compose_files() -> None:
    node = compose_config(
        "docker-compose.node.yml", MASTER_URL="http://10.0.0.10:8000", PUBLIC_HOST="10.0.0.21"
    )
    slave = node["services"]["slave"]  # type: ignore[index]
    assert slave["network_mode"] == "host"
    assert slave["environment"]["MASTER_URL"] == "http://10.0.0.10:8000"
    lan = compose_config(
        "docker-compose.yml",
        "docker-compose.lan.yml",
        LAN_PARENT="eth0",
        LAN_SUBNET="10.0.0.0/24",
        LAN_GATEWAY="10.0.0.1",
        LAN_RANGE="10.0.0.192/27",
    )
    assert lan["services"]["slave"]["environment"]["PUBLIC_NETWORK"] == "10.0.0.192/27"  # type: ignore[index]


def test_kubernetes_manifests_validate() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            *sorted(str(p) for p in (ROOT / "deploy" / "k8s").glob("*.yaml")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("passed") == 5
    docs = [
        d
        for p in sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Deployment", "Deployment", "HorizontalPodAutoscaler", "Secret", "Service"]
    slave = next(
        d for d in docs if d["metadata"]["name"] == "airclass-slave" and d["kind"] == "Deployment"
    )
    container = slave["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "envFrom" not in container
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SECRET_KEY_FILE"] == "/run/secrets/airclass/SECRET_KEY"
    assert env["CLUSTER_KEY_FILE"] == "/run/secrets/airclass/CLUSTER_KEY"
    volume = slave["spec"]["template"]["spec"]["volumes"][0]["secret"]
    # A slave of a cluster refuses to start with the teacher password: it is never mounted.
    assert volume["secretName"] == "airclass-secrets"
    assert [i["key"] for i in volume["items"]] == ["SECRET_KEY", "CLUSTER_KEY"]
    master = next(
        d for d in docs if d["metadata"]["name"] == "airclass-master" and d["kind"] == "Deployment"
    )
    items = master["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"]
    assert [i["key"] for i in items] == ["SECRET_KEY", "CLUSTER_KEY", "TEACHER_PASSWORD"]


@pytest.mark.parametrize("files", [("docker-compose.yml",), ("docker-compose.node.yml",)])
def test_compose_secrets_are_files_and_slaves_hold_no_teacher_password(
    files: tuple[str, ...],
) -> None:
    config = compose_config(*files, MASTER_URL="http://10.0.0.10:8000", PUBLIC_HOST="10.0.0.21")
    services = config["services"]
    assert isinstance(services, dict)
    secrets_ = config["secrets"]
    assert isinstance(secrets_, dict)
    assert secrets_["secret_key"]["file"] == "/run/keys/secret_key"
    for name in ("slave", "master"):
        env = services[name]["environment"]
        assert not {"SECRET_KEY", "CLUSTER_KEY", "TEACHER_PASSWORD"} & set(env), env
        assert env["SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    mounted = {name: {s["source"] for s in services[name]["secrets"]} for name in services
               if name in ("slave", "master")}
    assert mounted["slave"] - {"metrics_token"} == {"secret_key", "cluster_key"}
    assert mounted["master"] - {"metrics_token"} == {
        "secret_key", "cluster_key", "teacher_password"
    }
    assert "TEACHER_PASSWORD_FILE" not in services["slave"]["environment"]


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/airclass.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        re.sub(r"_(bucket|total|count|sum)$", "", m)
        for e in exprs
        for m in re.findall(r"\bairclass_[a-z_]+", e)
    }
    exported = (
        SLAVE_METRICS
        | MASTER_METRICS
        | {
            "airclass_cluster_capacity_viewers",
            "airclass_node_bandwidth_bytes_per_second",
        }
    )
    assert used, "the dashboard has queries"
    assert used <= exported, used - exported
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("viewers", "cpu", "memory", "bandwidth", "error", "latency"):
        assert topic in titles


def test_dockerfile_is_small_non_root_and_healthchecked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final = text.split("\nFROM ")[-1]
    assert final.startswith("python:3.11-slim")
    assert "USER airclass" in final and "HEALTHCHECK" in final
    assert 'ENTRYPOINT ["python", "-m", "airclass"]' in final
    assert "gcc" not in final and "build-essential" not in final


def test_docker_image_builds() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode
    ):
        pytest.skip("no Docker engine here: the image build is checked where one runs")
    run = subprocess.run(
        [docker, "build", "-t", "airclass:test", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
