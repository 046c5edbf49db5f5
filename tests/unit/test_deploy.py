"""The deployment files in deploy/, checked offline: the Quadlet unit against Quadlet's
documented keys, the compose file, and every Kubernetes object against the Kubernetes
schemas (kubernetes-validate, strict) and against each other. Every setting any of them
gives must be one the service reads, and the whole set must start the service's
configuration without error."""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from placement_dev.standins import cli as standins_cli

from placement.config import VARIABLES, Config, variables

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# DCM's container health check (the image must have bash).
DCM_HEALTH_CMD = "bash -c 'echo > /dev/tcp/localhost/{port}'"
IMAGE = "localhost/placement-manager:latest"
NATS_IMAGE = "docker.io/library/nats:2.9-alpine"
# The NATS settings a deployment file names (the rest of them in comments, with defaults).
NATS_SETTINGS = sorted(name for name in VARIABLES if name.startswith("NATS_"))
DEV_IMAGE = "localhost/placement-manager-dev:latest"

# podman-systemd.unit(5), "Container units [Container]" (the Podman 5 documentation): the
# keys Quadlet accepts there; a unit with any other key is not generated at all.
QUADLET_CONTAINER_KEYS = frozenset(
    [
        "AddCapability",
        "AddDevice",
        "AddHost",
        "Annotation",
        "AutoUpdate",
        "CgroupsMode",
        "ContainerName",
        "ContainersConfModule",
        "DNS",
        "DNSOption",
        "DNSSearch",
        "DropCapability",
        "Entrypoint",
        "Environment",
        "EnvironmentFile",
        "EnvironmentHost",
        "Exec",
        "ExposeHostPort",
        "GIDMap",
        "GlobalArgs",
        "Group",
        "GroupAdd",
        "HealthCmd",
        "HealthInterval",
        "HealthLogDestination",
        "HealthMaxLogCount",
        "HealthMaxLogSize",
        "HealthOnFailure",
        "HealthRetries",
        "HealthStartPeriod",
        "HealthStartupCmd",
        "HealthStartupInterval",
        "HealthStartupRetries",
        "HealthStartupSuccess",
        "HealthStartupTimeout",
        "HealthTimeout",
        "HostName",
        "Image",
        "IP",
        "IP6",
        "Label",
        "LogDriver",
        "LogOpt",
        "Mask",
        "Memory",
        "Mount",
        "Network",
        "NetworkAlias",
        "NoNewPrivileges",
        "Notify",
        "PidsLimit",
        "Pod",
        "PodmanArgs",
        "PublishPort",
        "Pull",
        "ReadOnly",
        "ReadOnlyTmpfs",
        "ReloadCmd",
        "ReloadSignal",
        "Retry",
        "RetryDelay",
        "Rootfs",
        "RunInit",
        "SeccompProfile",
        "Secret",
        "SecurityLabelDisable",
        "SecurityLabelFileType",
        "SecurityLabelLevel",
        "SecurityLabelNested",
        "SecurityLabelType",
        "ShmSize",
        "StartWithPod",
        "StopSignal",
        "StopTimeout",
        "SubGIDMap",
        "SubUIDMap",
        "Sysctl",
        "Timezone",
        "Tmpfs",
        "UIDMap",
        "Ulimit",
        "Unmask",
        "User",
        "UserNS",
        "Volume",
        "WorkingDir",
    ]
)
# The same page: the only [Install] keys Quadlet applies; the other sections are
# systemd's own (systemd.unit(5), systemd.service(5)): the keys these files use.
QUADLET_SECTIONS: dict[str, dict[str, set[str] | frozenset[str]]] = {
    ".container": {
        "Unit": {"Description", "After", "Wants", "Requires", "Documentation"},
        "Container": QUADLET_CONTAINER_KEYS,
        "Service": {"Restart", "RestartSec", "TimeoutStartSec", "TimeoutStopSec"},
        "Install": {"Alias", "WantedBy", "RequiredBy", "UpheldBy", "DefaultInstance"},
    },
    ".network": {
        "Unit": {"Description"},
        "Network": {"NetworkName", "Driver", "Subnet", "Gateway", "Internal", "Label"},
        "Install": {"WantedBy"},
    },
}
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


# Quadlet.


def unit_file(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file: section -> (key, value) in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith(("#", ";")):
            continue
        if text.startswith("[") and text.endswith("]"):
            current = sections.setdefault(text[1:-1], [])
            continue
        key, sep, value = text.partition("=")
        assert sep, f"{path.name}:{number}: not `Key=value`"
        assert current is not None, f"{path.name}:{number}: outside a section"
        current.append((key.strip(), value.strip()))
    return sections


def env_file(path: Path) -> dict[str, str]:
    """An environment file as podman --env-file reads it: NAME=value lines, # comments."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not NAME=value"
            env[name] = value
    return env


def quadlet_units() -> list[Path]:
    return sorted(p for p in (DEPLOY / "quadlet").iterdir() if p.suffix in QUADLET_SECTIONS)


@pytest.mark.parametrize("unit", quadlet_units(), ids=lambda p: p.name)
def test_quadlet_units_use_only_documented_sections_and_keys(unit: Path) -> None:
    allowed = QUADLET_SECTIONS[unit.suffix]
    for section, entries in unit_file(unit).items():
        assert section in allowed, f"{unit.name}: section [{section}]"
        unknown = {key for key, _ in entries} - allowed[section]
        assert not unknown, f"{unit.name} [{section}]: {sorted(unknown)}"


def test_the_quadlet_container_runs_the_image_as_dcm_does() -> None:
    unit = DEPLOY / "quadlet" / "placement-manager.container"
    container = dict(unit_file(unit)["Container"])
    assert container["Image"] == IMAGE
    env = env_file(unit.parent / container["EnvironmentFile"])
    port = Config.from_env(env).port
    assert container["HealthCmd"] == DCM_HEALTH_CMD.format(port=port)
    assert container["PublishPort"].rsplit(":", 1)[1] == str(port)
    network = container["Network"]
    assert not network.endswith(".network") or (unit.parent / network).exists()
    assert container["ReadOnly"] == "true"
    assert container.get("ReadOnlyTmpfs", "true") == "true"  # a writable tmpfs on /tmp
    service = dict(unit_file(unit)["Service"])
    assert service["Restart"] in {"always", "on-failure"}


def test_the_quadlet_env_file_sets_only_settings_of_the_service() -> None:
    env = env_file(DEPLOY / "quadlet" / "placement-manager.env")
    assert set(env) <= variables(), set(env) - variables()
    config = Config.from_env(env)  # and they agree with each other (DB_PASS and DB_PASSWORD)
    assert config.nats.url == env["NATS_URL"]


# Compose.


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def health_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[0] in {"CMD", "CMD-SHELL"}
    return str(test[1]) if test[0] == "CMD-SHELL" else shlex.join(test[1:])


def test_compose_runs_two_replicas_of_the_image_on_one_postgresql() -> None:
    services = compose()["services"]
    replicas = {name: s for name, s in services.items() if s.get("image") == IMAGE}
    assert len(replicas) == 2
    for name, service in replicas.items():
        env = {key: str(value) for key, value in service["environment"].items()}
        assert set(env) <= variables(), (name, set(env) - variables())
        config = Config.from_env(env)
        assert config.database.host in services
        assert health_command(service) == DCM_HEALTH_CMD.format(port=config.port)
        assert service["build"] == {"context": "..", "dockerfile": "Containerfile"}
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert service["read_only"] is True
        assert "/tmp" in service["tmpfs"]
    for name, service in services.items():
        assert service["restart"] in {"always", "unless-stopped", "on-failure"}, name


def test_compose_runs_the_standins_from_the_dev_target_where_the_service_expects_them() -> None:
    services = compose()["services"]
    env = services["placement-manager-1"]["environment"]
    for url in (env["POLICY_MANAGER_EVALUATION_URL"], env["SP_RESOURCE_MANAGER_URL"]):
        host, port = re.fullmatch(r"http://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
        standin = services[host]
        assert standin["image"] == DEV_IMAGE
        assert standin["build"]["target"] == "dev"
        args = standins_cli._parser().parse_args(standin["command"])
        assert args.port == int(port)
        assert args.host == "0.0.0.0"


def nats_address(url: str) -> tuple[str, int]:
    host, port = re.fullmatch(r"nats://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    return host, int(port)


def test_compose_runs_nats_with_jetstream_where_the_service_and_standin_expect_it() -> None:
    loaded = compose()
    services = loaded["services"]
    replicas = [s for s in services.values() if s.get("image") == IMAGE]
    [url] = {str(s["environment"]["NATS_URL"]) for s in replicas}
    assert Config.from_env({"NATS_URL": url}).nats.url == url
    host, port = nats_address(url)
    nats = services[host]
    assert nats["image"] == NATS_IMAGE
    command = nats["command"]
    assert "-js" in command
    assert "-p" not in command  # the server's default client port, then
    assert port == 4222
    store = command[command.index("-sd") + 1]
    [volume] = [v.split(":")[0] for v in nats["volumes"] if v.split(":")[1] == store]
    assert volume in loaded["volumes"]
    for name, service in services.items():
        if service.get("image") == IMAGE:
            assert service["depends_on"][host] == {"condition": "service_started"}, name
    sprm = standins_cli._parser().parse_args(services["service-provider-manager"]["command"])
    assert sprm.nats_url == url
    text = (DEPLOY / "compose.yaml").read_text()
    assert all(name in text for name in NATS_SETTINGS), [n for n in NATS_SETTINGS if n not in text]


def test_the_containerfile_bakes_no_setting_and_installs_from_the_lock() -> None:
    text = (ROOT / "Containerfile").read_text()
    baked = {
        name
        for line in re.findall(r"^ENV (.+)$", text, re.M)
        for name in re.findall(r"(\w+)=", line)
    }
    assert not baked & variables()
    assert re.search(r"^ARG BASE_IMAGE=", text, re.M)
    assert "--require-hashes -r requirements-build.lock" in text
    assert "--require-hashes --no-deps -r /tmp/requirements.lock" in text
    assert re.search(r"^FROM service AS dev$", text, re.M)


def test_the_build_dependency_group_is_the_build_system() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["dependency-groups"]["build"] == pyproject["build-system"]["requires"]


# Kubernetes.


def kubernetes_objects() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object in every YAML file under deploy/kubernetes."""
    files = sorted([*KUBERNETES.glob("**/*.yaml"), *KUBERNETES.glob("**/*.yml")])
    return [
        (str(path.relative_to(KUBERNETES)), doc)
        for path in files
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


OBJECTS = kubernetes_objects()


def test_there_are_kubernetes_manifests() -> None:
    kinds = {doc["kind"] for _, doc in OBJECTS}
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "obj",
    OBJECTS,
    ids=[
        f"{name}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}" for name, doc in OBJECTS
    ],
)
def test_every_kubernetes_object_is_valid(obj: tuple[str, dict[str, Any]], version: str) -> None:
    name, doc = obj
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{name}: {exc.message} at {'.'.join(str(p) for p in exc.path)}")


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in OBJECTS if doc["kind"] == kind]


def pod_templates() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every object that runs pods."""
    for _, doc in OBJECTS:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            yield doc, spec["jobTemplate"]["spec"]["template"]
        elif "template" in spec:
            yield doc, spec["template"]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def container_ports(template: dict[str, Any]) -> set[int | str]:
    ports: set[int | str] = set()
    for container in template["spec"]["containers"]:
        for port in container.get("ports", []):
            ports |= {port["containerPort"], *([port["name"]] if "name" in port else [])}
    return ports


def external_secrets() -> dict[str, set[str]]:
    """Secrets the operator creates, as the README says (`kubectl create secret generic`):
    name -> keys."""
    readme = (ROOT / "README.md").read_text()
    secrets: dict[str, set[str]] = {}
    for name, options in re.findall(
        r"kubectl create secret generic (\S+)((?: --from-\S+)+)", readme
    ):
        secrets[name] = set(re.findall(r"--from-(?:literal|file)=([\w.-]+)=", options))
    return secrets


def test_selectors_match_the_pods_they_select() -> None:
    templates = [template for _, template in pod_templates()]
    for workload, template in pod_templates():
        selector = workload["spec"].get("selector", {}).get("matchLabels")
        if selector is not None:
            assert matches(selector, template["metadata"]["labels"]), workload["metadata"]
    for service in of_kind("Service"):
        selected = [
            t for t in templates if matches(service["spec"]["selector"], t["metadata"]["labels"])
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert all(target in container_ports(t) for t in selected), port
    for budget in of_kind("PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(matches(selector, t["metadata"]["labels"]) for t in templates), budget


def test_probes_and_scrape_annotations_name_container_ports() -> None:
    for workload, template in pod_templates():
        ports = container_ports(template)
        for container in template["spec"]["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in container:
                    action = container[probe].get("httpGet") or container[probe].get("tcpSocket")
                    assert action["port"] in ports, (workload["metadata"]["name"], probe)
        annotations = template["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            assert int(annotations["prometheus.io/port"]) in ports


def test_referenced_config_maps_and_secrets_and_their_keys_exist() -> None:
    config_maps = {c["metadata"]["name"]: set(c.get("data", {})) for c in of_kind("ConfigMap")}
    secrets = {
        s["metadata"]["name"]: set(s.get("data", {})) | set(s.get("stringData", {}))
        for s in of_kind("Secret")
    }
    secrets |= external_secrets()
    for workload, template in pod_templates():
        where = workload["metadata"]["name"]
        spec = template["spec"]
        for volume in spec.get("volumes", []):
            for kind, known, name_field in (
                ("configMap", config_maps, "name"),
                ("secret", secrets, "secretName"),
            ):
                if kind in volume:
                    name = volume[kind][name_field]
                    assert name in known, (where, kind, name)
                    for item in volume[kind].get("items", []):
                        assert item["key"] in known[name], (where, name, item["key"])
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, where
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, where
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                for kind, known in (("configMapKeyRef", config_maps), ("secretKeyRef", secrets)):
                    if kind in ref:
                        assert ref[kind]["key"] in known.get(ref[kind]["name"], set()), (where, var)


def service_environment(container: dict[str, Any]) -> dict[str, str]:
    """What the container's environment gives the service (ConfigMaps and literal values)."""
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind("ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= config_maps[source["configMapRef"]["name"]]
    env |= {var["name"]: var["value"] for var in container.get("env", []) if "value" in var}
    return env


def test_the_deployment_runs_the_service_as_intended() -> None:
    [deployment] = [
        d for d in of_kind("Deployment") if d["metadata"]["name"] == "placement-manager"
    ]
    spec, template = deployment["spec"], deployment["spec"]["template"]
    assert spec["replicas"] == 2
    assert template["spec"].get("restartPolicy", "Always") == "Always"
    [container] = template["spec"]["containers"]
    assert container["image"] == IMAGE

    # Every setting is one the service reads and the set is valid; secret files are mounted.
    env = service_environment(container)
    assert set(env) <= variables(), set(env) - variables()
    files = {name: path for name, path in env.items() if name.endswith("_FILE")}
    config = Config.from_env({k: v for k, v in env.items() if k not in files})
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    for path in files.values():
        directory, file_name = path.rsplit("/", 1)
        [volume] = [volumes[n] for n, mounted in mounts.items() if mounted == directory]
        assert file_name in {item["path"] for item in volume["secret"]["items"]}

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.port in ports.values()
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/api/v1alpha1/health"
    # Liveness must not ask the database: an outage would restart every replica.
    assert "/health" not in str(container["livenessProbe"])
    assert any(
        budget["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        for budget in of_kind("PodDisruptionBudget")
    )
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize(
    "pod",
    list(pod_templates()),
    ids=lambda p: f"{p[0]['kind']}/{p[0]['metadata']['name']}" if isinstance(p, tuple) else "",
)
def test_every_pod_runs_non_root_on_a_read_only_root_with_a_writable_tmp(
    pod: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, template = pod
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    for container in spec["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert any(
            m["mountPath"] == "/tmp" and m["name"] in tmp_volumes for m in container["volumeMounts"]
        )
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), kind


def test_the_kubernetes_nats_runs_jetstream_on_a_volume_where_the_config_map_points() -> None:
    [config_map] = [c for c in of_kind("ConfigMap") if c["metadata"]["name"] == "placement-manager"]
    url = config_map["data"]["NATS_URL"]
    assert Config.from_env({"NATS_URL": url}).nats.url == url
    host, port = nats_address(url)
    [service] = [s for s in of_kind("Service") if s["metadata"]["name"] == host]
    [service_port] = [p for p in service["spec"]["ports"] if p["port"] == port]
    [(workload, template)] = [
        (w, t)
        for w, t in pod_templates()
        if matches(service["spec"]["selector"], t["metadata"]["labels"])
    ]
    assert workload["kind"] == "StatefulSet"
    assert workload["spec"]["replicas"] == 1
    [container] = template["spec"]["containers"]
    assert container["image"] == NATS_IMAGE
    assert service_port["targetPort"] in container_ports(template)
    args = container["args"]
    assert "-js" in args
    store = args[args.index("-sd") + 1]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == store]
    claims = {c["metadata"]["name"] for c in workload["spec"]["volumeClaimTemplates"]}
    assert mount["name"] in claims
    text = (KUBERNETES / "configmap.yaml").read_text()
    assert all(name in text for name in NATS_SETTINGS), [n for n in NATS_SETTINGS if n not in text]
