"""deploy/: the image, the compose stack, the Helm chart and the container health check.

Offline and fast: nothing is built or pulled. The chart is rendered and linted by the real
`helm` binary (the helm-binary dev dependency), and every rendered object is validated against
Kubernetes' own schemas bundled by kubernetes-validate (a dev dependency).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import kubernetes_validate
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from policyhub.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "policyhub"
TEMPLATES = CHART / "templates"
DOCKERFILE = DEPLOY / "Dockerfile"
HEALTHCHECK = DEPLOY / "healthcheck.py"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def plain_yaml_files() -> list[Path]:
    """Every YAML file under deploy/ except the chart's templates (Go templates, not YAML)."""
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and TEMPLATES not in p.parents)


def accepted_by_policyhub(env: dict[str, str]) -> Config:
    """What policyhub itself makes of these POLICYHUB_* variables (raises on unknown keys or bad values)."""
    return load_config(env={key: value for key, value in env.items() if key.startswith("POLICYHUB_")})


# ---------------------------------------------------------------- YAML


def test_deploy_has_yaml_files():
    names = {p.relative_to(DEPLOY).as_posix() for p in plain_yaml_files()}
    assert {"compose.yaml", "helm/policyhub/Chart.yaml", "helm/policyhub/values.yaml"} <= names


@pytest.mark.parametrize("path", plain_yaml_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path):
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert documents and all(isinstance(doc, dict) for doc in documents), f"{path}: expected mappings"


def test_example_config_file_is_valid():
    config = load_config(str(DEPLOY / "policyhub.yaml"), env={})
    assert config.host == "0.0.0.0" and config.mongodb_uri.startswith("mongodb://")


# ---------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _mongo_members(services: dict) -> dict[str, dict]:
    return {
        name: svc
        for name, svc in services.items()
        if str(svc.get("image", "")).startswith("mongo:") and "mongod" in svc.get("command", [])
    }


def test_compose_three_mongo_members_in_one_replica_set(compose):
    members = _mongo_members(compose["services"])
    assert sorted(members) == ["mongo1", "mongo2", "mongo3"]
    for name, svc in members.items():
        assert svc["image"] == "mongo:7"
        command = svc["command"]
        assert command[command.index("--replSet") + 1] == "rs0", name
        assert "--bind_ip_all" in command, name
        assert svc.get("healthcheck", {}).get("test"), name
        assert svc.get("restart") in {"always", "unless-stopped", "on-failure"}, name
        assert any(str(volume).endswith(":/data/db") for volume in svc.get("volumes", [])), name


def test_compose_replica_set_init_is_a_one_shot_after_healthy_members(compose):
    services = compose["services"]
    init = services["mongo-init"]
    assert init["image"] == "mongo:7"
    assert init.get("restart", "no") == "no"
    assert init["depends_on"] == {name: {"condition": "service_healthy"} for name in ("mongo1", "mongo2", "mongo3")}
    (mount,) = [v for v in init["volumes"] if "mongo-init-replica-set.js" in v]
    source, target = mount.split(":")[:2]
    assert (DEPLOY / source).is_file() and target in init["command"]
    script = (DEPLOY / source).read_text()
    assert "rs.initiate(" in script and "NotYetInitialized" in script  # idempotent: initiates only when needed
    for host in ("mongo1:27017", "mongo2:27017", "mongo3:27017"):
        assert host in script
    assert '_id: "rs0"' in script


def test_compose_two_policyhub_replicas(compose):
    services = compose["services"]
    policyhubs = {name: svc for name, svc in services.items() if name.startswith("policyhub")}
    assert sorted(policyhubs) == ["policyhub1", "policyhub2"]
    host_ports = set()
    for name, svc in policyhubs.items():
        assert svc["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
        env = svc["environment"]
        assert env["POLICYHUB_MONGODB_URI"] == "mongodb://mongo1,mongo2,mongo3/?replicaSet=rs0"
        assert env["POLICYHUB_HOST"] == "0.0.0.0"
        config = accepted_by_policyhub(env)
        assert config.port == 50051
        assert config.spaceone_port == 50061
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD" and any(part.endswith("healthcheck.py") for part in test), name
        assert svc["depends_on"]["mongo-init"] == {"condition": "service_completed_successfully"}, name
        assert svc["restart"] in {"always", "unless-stopped", "on-failure"}, name
        port, spaceone_port = svc["ports"]
        host_ports.add(port.rsplit(":", 1)[0])
        host_ports.add(spaceone_port.rsplit(":", 1)[0])
        assert port.endswith(":50051") and spaceone_port.endswith(":50061"), name
    assert len(host_ports) == 4


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, arguments = current.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        current = ""
    return instructions


@pytest.fixture(scope="module")
def stages():
    """The Dockerfile's stages, each a list of instructions (FROM first)."""
    result: list[list[tuple[str, str]]] = []
    for keyword, arguments in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, arguments))
    return result


def _args(stage, keyword):
    return [arguments for kw, arguments in stage if kw == keyword]


def test_dockerfile_is_multi_stage_on_python_slim(stages):
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert len(stages) >= 2
    for stage in stages:
        assert _args(stage, "FROM")[0].split()[0] in {"${PYTHON_IMAGE}", "python:3.11-slim"}


def test_dockerfile_generates_stubs_in_the_build_stage(stages):
    build = " ".join(" ".join(_args(stage, "RUN")) for stage in stages[:-1])
    tools_pin = next(
        dep for dep in PYPROJECT["project"]["optional-dependencies"]["codegen"] if dep.startswith("grpcio-tools==")
    )
    assert tools_pin in build, "grpcio-tools must be installed with pyproject's pin in the build stage"
    assert "proto/generate.py" in build
    runtime_runs = " ".join(_args(stages[-1], "RUN"))
    assert "grpcio-tools" not in runtime_runs and "generate.py" not in runtime_runs


def test_dockerfile_runtime_runs_as_non_root(stages):
    runtime = stages[-1]
    users = _args(runtime, "USER")
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert _args(runtime, "ENTRYPOINT") == ['["policyhub"]']
    assert "50051" in " ".join(_args(runtime, "EXPOSE"))


def test_dockerfile_healthcheck_uses_the_shipped_probe(stages):
    runtime = stages[-1]
    (healthcheck,) = _args(runtime, "HEALTHCHECK")
    copies = [arguments.split() for arguments in _args(runtime, "COPY") if "deploy/healthcheck.py" in arguments]
    assert copies, "deploy/healthcheck.py must be copied into the runtime stage"
    destination = copies[0][-1]
    assert "CMD" in healthcheck and destination in healthcheck
    assert "--timeout=" in healthcheck and "--interval=" in healthcheck


def test_dockerfile_environment_is_valid_configuration(stages):
    env = {}
    for arguments in _args(stages[-1], "ENV"):
        for key, value in re.findall(r"(\w+)=(\S+)", arguments):
            env[key] = value
    config = accepted_by_policyhub(env)
    assert config.host == "0.0.0.0" and config.port == 50051


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern decides; a pattern also matches what is under it."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in path.split("/"))
        else:
            parts = path.split("/")
            hit = any(fnmatch.fnmatch("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1))
        if hit:
            ignored = not negated
    return ignored


def test_dockerignore_sends_only_what_the_build_copies(stages):
    ignore = DEPLOY / "Dockerfile.dockerignore"
    assert not (ROOT / ".dockerignore").exists()
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    sources = []
    for stage in stages:
        for arguments in _args(stage, "COPY"):
            if not arguments.startswith("--from"):
                sources += arguments.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is copied but ignored"
    for left_out in (
        ".venv/bin/python",
        ".git/config",
        "src/policyhub/_gen/__init__.py",
        "tests/conftest.py",
        "src/policyhub/__pycache__/server.cpython-311.pyc",
    ):
        assert _ignored(left_out, patterns), f"{left_out} would be sent to the builder"
    assert not _ignored("src/policyhub/server.py", patterns)


# ---------------------------------------------------------------- healthcheck.py


def run_healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args],
        capture_output=True,
        text=True,
        timeout=20,
        env={**_clean_env(), **(env or {})},
    )


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("POLICYHUB_")}


@contextlib.contextmanager
def running_policyhub(env: dict[str, str], port: int, log_path: Path) -> Iterator[None]:
    """`python -m policyhub` (embedded store) with exactly these POLICYHUB_* variables, until it serves on port."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "policyhub"],
            env={**_clean_env(), **env},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            while True:
                try:
                    grpc.channel_ready_future(channel).result(timeout=0.5)
                    break
                except grpc.FutureTimeoutError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"policyhub did not start:\n{log_path.read_text()}") from None
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def policyhub_port(tmp_path_factory):
    """A server on a free loopback port."""
    port = free_port()
    env = {"POLICYHUB_HOST": "127.0.0.1", "POLICYHUB_PORT": str(port), "POLICYHUB_SHUTDOWN_GRACE_SECONDS": "1"}
    with running_policyhub(env, port, tmp_path_factory.mktemp("policyhub") / "server.log"):
        yield port


def test_healthcheck_passes_against_a_running_server(policyhub_port):
    result = run_healthcheck(env={"POLICYHUB_PORT": str(policyhub_port)})
    assert result.returncode == 0, result.stderr
    assert run_healthcheck(str(policyhub_port)).returncode == 0  # the port as an argument


def test_healthcheck_ignores_a_service_link_in_policyhub_port():
    """POLICYHUB_PORT=tcp://… is Kubernetes' link, not a port: the default port is asked, not a bad-port exit."""
    result = run_healthcheck(env={"POLICYHUB_PORT": "tcp://10.96.0.10:50051"})
    assert result.returncode in (0, 1), result.stderr
    assert result.returncode == 0 or "127.0.0.1:50051" in result.stderr


def test_healthcheck_fails_fast_on_a_closed_port():
    port = free_port()  # nobody listens on it any more
    started = time.monotonic()
    result = run_healthcheck(env={"POLICYHUB_PORT": str(port)})
    assert result.returncode != 0
    assert time.monotonic() - started < 10
    assert "UNAVAILABLE" in result.stderr


def test_healthcheck_fails_when_not_serving():
    """A server in graceful shutdown answers NOT_SERVING: unhealthy."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result = run_healthcheck(str(port))
        assert result.returncode == 1 and "NOT_SERVING" in result.stderr
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert run_healthcheck(str(port)).returncode == 0
    finally:
        server.stop(0)


def test_healthcheck_times_out_on_a_silent_port():
    """A listener that accepts TCP but never speaks HTTP/2: the 2 s deadline ends the check."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        started = time.monotonic()
        result = run_healthcheck(str(listener.getsockname()[1]))
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 8


def test_healthcheck_rejects_a_bad_port():
    assert run_healthcheck("not-a-port").returncode == 2
    assert run_healthcheck("70000").returncode == 2


# ---------------------------------------------------------------- Helm chart: static checks


@pytest.fixture(scope="module")
def values():
    return yaml.safe_load((CHART / "values.yaml").read_text())


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "policyhub"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[\w.]+)?", chart["version"])
    assert chart["appVersion"] == PYPROJECT["project"]["version"]
    assert chart["description"]


def test_chart_has_the_expected_templates():
    names = {p.name for p in TEMPLATES.iterdir()}
    assert {
        "_helpers.tpl",
        "NOTES.txt",
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
        "secret.yaml",
        "hpa.yaml",
        "pdb.yaml",
        "servicemonitor.yaml",
    } <= names


VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def test_every_values_reference_exists_in_values_yaml(values):
    missing = []
    for template in sorted(TEMPLATES.iterdir()):
        for match in VALUES_REF.finditer(template.read_text()):
            node = values
            for key in match.group(1).lstrip(".").split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(f"{template.name}: .Values{match.group(1)}")
                    break
                node = node[key]
    assert not missing, f"referenced but not in values.yaml: {sorted(set(missing))}"


def _documented_values() -> set[str]:
    """The value paths named in deploy/README.md's table of chart values (`config.*` names `config`)."""
    text = (DEPLOY / "README.md").read_text()
    table = text.split("Every value (", 1)[1].split("\n\n", 2)[1]
    names = set()
    for row in table.splitlines():
        first_cell = row.split("|")[1]
        names |= {name.removesuffix(".*") for name in re.findall(r"`([^`]+)`", first_cell)}
    return names


def test_every_value_is_documented_in_the_deploy_readme(values):
    """A value is documented when the table names it, or names the mapping that holds it."""
    documented = _documented_values()
    missing = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in documented:
                continue
            if isinstance(value, dict) and value:
                walk(value, f"{path}.")
            else:
                missing.append(path)

    walk(values, "")
    assert not missing, f"values.yaml keys missing from deploy/README.md's table: {missing}"
    stale = {name for name in documented if _lookup(values, name) is None}
    assert not stale, f"deploy/README.md's table names values that do not exist: {sorted(stale)}"


def _lookup(values: dict, path: str):
    node = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def test_values_configure_only_known_policyhub_keys(values):
    known = set(Config.__dataclass_fields__)
    assert set(values["config"]) <= known - {"host", "port", "mongodb_uri"}


ACTION = re.compile(r"{{-?.*?-?}}", re.S)


def template_skeleton(text: str) -> str:
    """A template with its actions removed: lines holding only actions vanish, inline ones become a placeholder."""
    lines = []
    for line in text.splitlines():
        if ACTION.sub("", line).strip() == "" and "{{" in line:
            continue
        lines.append(ACTION.sub("x", line))
    return "\n".join(lines)


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.yaml")))
def test_template_skeleton_is_a_kubernetes_object(template):
    skeleton = template_skeleton((TEMPLATES / template).read_text())
    documents = [doc for doc in yaml.safe_load_all(skeleton) if doc]
    assert len(documents) == 1, template
    (document,) = documents
    assert document.get("apiVersion") and document.get("kind"), template
    assert "name" in document.get("metadata", {}), template


# ---------------------------------------------------------------- Helm chart: rendered

JWKS = '{"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}'
# The least a production install needs besides mongodb.uri (which has a placeholder default).
SECURE = {"auth": {"keys": JWKS, "issuer": "https://idp.test", "audience": "policyhub"}}
DEVELOPMENT = {"auth": {"developmentMode": True}}
# Kinds whose schema is a CRD's, not Kubernetes' own: checked field by field in their tests.
CUSTOM_KINDS = {"ServiceMonitor"}
# Every rendered object is validated against the schemas of the oldest Kubernetes that
# kubernetes-validate bundles (the chart needs >= 1.24) and of the newest, in strict mode
# (an unknown field is an error, as `kubectl apply --validate=strict` makes it).
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


def merged(*layers: dict) -> dict:
    result: dict = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


class RenderFailed(Exception):
    pass


class Helm:
    """The real helm binary (the helm-binary dev dependency), offline: template and lint need no cluster."""

    def __init__(self, path: str, tmp_path: Path):
        self.path = path
        self.tmp_path = tmp_path

    def _values_file(self, overrides: dict) -> Path:
        handle, name = tempfile.mkstemp(suffix=".yaml", dir=self.tmp_path)
        with os.fdopen(handle, "w") as out:
            yaml.safe_dump(overrides, out)
        return Path(name)

    def template(self, overrides: dict, *args: str, chart: Path = CHART) -> str:
        command = [self.path, "template", "policyhub", str(chart), "--namespace", "test"]
        command += ["--values", str(self._values_file(overrides)), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RenderFailed(result.stderr)
        return result.stdout

    def render(self, overrides: dict) -> list[dict]:
        documents = [doc for doc in yaml.safe_load_all(self.template(overrides)) if doc]
        for document in documents:
            if document["kind"] in CUSTOM_KINDS:
                continue
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(document, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    raise AssertionError(f"{document['kind']} is invalid for Kubernetes {version}: {exc}") from None
        return documents

    def notes(self, overrides: dict) -> str:
        """NOTES.txt as an install prints it (helm template leaves it out, so a copy of the chart renders it)."""
        chart = self.tmp_path / "notes-chart"
        shutil.rmtree(chart, ignore_errors=True)
        shutil.copytree(CHART, chart)
        notes = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "zz-notes.yaml").write_text(
            '{{- define "test.notes" }}' + notes + "{{ end }}\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
            'data:\n  notes: {{ include "test.notes" . | quote }}\n'
        )
        text = self.template(overrides, "--show-only", "templates/zz-notes.yaml", chart=chart)
        return yaml.safe_load(text)["data"]["notes"]

    def lint(self, overrides: dict) -> list[str]:
        command = [self.path, "lint", "--strict", str(CHART), "--values", str(self._values_file(overrides))]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        return [] if result.returncode == 0 else [result.stdout + result.stderr]


@pytest.fixture
def helm(tmp_path):
    path = shutil.which("helm", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if not path:
        pytest.fail("no helm binary: the helm-binary dev dependency is not installed (make test installs it)")
    return Helm(path, tmp_path)


def by_kind(documents: list[dict]) -> dict[str, dict]:
    kinds: dict[str, dict] = {}
    for document in documents:
        assert document["kind"] not in kinds, f"two {document['kind']} objects"
        kinds[document["kind"]] = document
    return kinds


def test_chart_lints(helm):
    assert helm.lint(SECURE) == []
    assert helm.lint(DEVELOPMENT) == []
    # helm lint reports a template's `fail` as information only, so the defaults lint too.
    assert helm.lint({}) == []


def test_chart_defaults_refuse_to_render_without_keys(helm):
    """Authentication is on by default: no keys and no explicit development mode is no install."""
    with pytest.raises(RenderFailed, match="authentication is on by default and needs the JWT public keys"):
        helm.render({})


def test_validation_catches_what_kubernetes_would_refuse(helm):
    """The schema check is real: a Deployment with an unknown field or a wrong type is refused."""
    deployment = by_kind(helm.render(SECURE))["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["ports"][0]["containerPort"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    container["ports"][0]["containerPort"] = 50051
    container["livenessProbe"]["grpcc"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_chart_renders_with_keys(helm, values):
    objects = by_kind(helm.render(SECURE))
    assert set(objects) == {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceAccount",
    }
    assert objects["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert objects["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    for document in objects.values():
        assert document["metadata"]["name"] == "policyhub"
        assert document["metadata"]["labels"]["app.kubernetes.io/instance"] == "policyhub"

    deployment = objects["Deployment"]
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    pod = deployment["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    port = values["containerPort"]
    metrics_port = values["metrics"]["containerPort"]
    assert container["ports"] == [
        {"name": "grpc", "containerPort": port, "protocol": "TCP"},
        {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"},
    ]

    # Native gRPC probes on the serving port.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == port, probe
        assert "httpGet" not in container[probe] and "exec" not in container[probe]

    # Non-root, read-only root file system.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]

    # Graceful shutdown fits in the grace period.
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > sleep + values["config"]["shutdown_grace_seconds"]

    # Environment: the ConfigMap (envFrom), the Secret's URI, the mounted keys.
    assert container["envFrom"] == [{"configMapRef": {"name": objects["ConfigMap"]["metadata"]["name"]}}]
    env = {e["name"]: e for e in container["env"]}
    uri_env = env["POLICYHUB_MONGODB_URI"]
    assert uri_env["valueFrom"]["secretKeyRef"] == {"name": objects["Secret"]["metadata"]["name"], "key": "mongodb-uri"}
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "auth-keys"]
    assert mount["readOnly"] is True and env["POLICYHUB_JWKS_FILE"]["value"] == f"{mount['mountPath']}/jwks.json"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "auth-keys"]
    assert volume["secret"]["secretName"] == objects["Secret"]["metadata"]["name"]
    assert volume["secret"]["items"] == [{"key": "keys", "path": "jwks.json"}]
    assert base64.b64decode(objects["Secret"]["data"]["keys"]).decode() == JWKS
    assert "POLICYHUB_SPACEONE_PORT" not in objects["ConfigMap"]["data"]  # the SpaceONE listener is off

    # Metrics: the port, Prometheus' scrape annotations on the pods, no ServiceMonitor by default.
    assert objects["ConfigMap"]["data"]["POLICYHUB_METRICS_PORT"] == str(metrics_port)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"

    service = objects["Service"]
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 50051, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP", "appProtocol": "http"},
    ]
    assert service["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]
    assert metric["name"] == "cpu" and metric["target"]["type"] == "Utilization"

    config = accepted_by_policyhub(_pod_environment(objects))
    assert not config.development_mode
    assert (config.jwt_issuer, config.jwt_audience, config.metrics_port) == ("https://idp.test", "policyhub", 9090)


def _pod_environment(objects: dict[str, dict], key_files: dict[str, str] | None = None) -> dict[str, str]:
    """The POLICYHUB_* variables a pod would see (Secret values decoded)."""
    env = dict(objects["ConfigMap"]["data"])
    secret = {key: base64.b64decode(value).decode() for key, value in objects["Secret"]["data"].items()}
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = secret[item["valueFrom"]["secretKeyRef"]["key"]]
    return env


def test_rendered_configuration_is_accepted_by_policyhub(helm, values):
    uri = "mongodb://user:pw@db-0.db,db-1.db,db-2.db/?replicaSet=rs0&authSource=admin"
    objects = by_kind(helm.render(merged(SECURE, {"mongodb": {"uri": uri}, "config": {"log_level": "DEBUG"}})))
    env = _pod_environment(objects)
    assert all(key.startswith("POLICYHUB_") for key in env)
    config = accepted_by_policyhub(env)
    assert config.host == "0.0.0.0" and config.port == values["containerPort"]
    assert config.mongodb_uri == uri
    assert config.log_level == "DEBUG"
    assert config.max_message_bytes == values["config"]["max_message_bytes"]  # not 4.194304e+06
    assert config.shutdown_grace_seconds == values["config"]["shutdown_grace_seconds"]
    # Set by the chart: unset, a pod would start one worker per CPU of its node.
    assert config.workers == values["config"]["workers"] == 1


def test_chart_development_mode_only_when_asked_and_announced(helm):
    objects = by_kind(helm.render(DEVELOPMENT))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "POLICYHUB_JWKS_FILE" not in {e["name"] for e in container["env"]}
    assert not [m for m in container["volumeMounts"] if m["name"] == "auth-keys"]
    assert "keys" not in objects["Secret"]["data"]
    config = accepted_by_policyhub(_pod_environment(objects))
    assert config.development_mode
    notes = helm.notes(DEVELOPMENT)
    assert "WARNING: auth.developmentMode is true" in notes and "NOBODY IS AUTHENTICATED" in notes
    secure_notes = helm.notes(SECURE)
    assert "WARNING" not in secure_notes and "NOBODY" not in secure_notes
    assert "Authentication: JWTs from https://idp.test for policyhub" in secure_notes


def test_chart_keys_from_an_existing_secret(helm):
    objects = by_kind(
        helm.render(
            merged(
                SECURE,
                {"auth": {"keys": "", "existingSecret": "idp-keys", "existingSecretKey": "jwks"}},
            )
        )
    )
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "auth-keys"]
    assert volume["secret"]["secretName"] == "idp-keys"
    assert volume["secret"]["items"] == [{"key": "jwks", "path": "jwks.json"}]
    assert "keys" not in objects["Secret"]["data"]  # the chart's Secret holds only the URI
    notes = helm.notes(merged(SECURE, {"auth": {"keys": "", "existingSecret": "idp-keys"}}))
    assert "of Secret idp-keys (key keys)" in notes


def test_chart_keys_from_a_jwks_uri_mount_nothing(helm):
    uri = "https://idp.test/.well-known/jwks.json"
    values = merged(SECURE, {"auth": {"keys": "", "jwksUri": uri}, "config": {"jwks_refresh_seconds": 600}})
    objects = by_kind(helm.render(values))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not [m for m in container["volumeMounts"] if m["name"] == "auth-keys"]
    assert not [v for v in pod["volumes"] if v["name"] == "auth-keys"]
    config = accepted_by_policyhub(_pod_environment(objects))
    assert (config.jwks_uri, config.jwks_file, config.jwks_refresh_seconds) == (uri, "", 600)
    assert not config.development_mode
    assert f"verified with the keys published at {uri}." in helm.notes(values)


def test_chart_existing_secret_and_fixed_replicas(helm):
    objects = by_kind(
        helm.render(
            {
                "existingSecret": "my-policyhub",
                "auth": {"existingSecret": "my-policyhub", "issuer": "https://idp.test", "audience": "policyhub"},
                "autoscaling": {"enabled": False},
                "replicaCount": 3,
            }
        )
    )
    assert "Secret" not in objects and "HorizontalPodAutoscaler" not in objects
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "my-policyhub"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "auth-keys"]
    assert volume["secret"]["secretName"] == "my-policyhub" and volume["secret"]["items"][0]["key"] == "keys"
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_chart_spaceone_listener_has_its_own_port(helm):
    objects = by_kind(helm.render(merged(SECURE, {"spaceone": {"enabled": True, "publicDomainId": "domain-public"}})))
    config = accepted_by_policyhub(_pod_environment(objects))
    assert (config.spaceone_port, config.public_domain_id) == (50061, "domain-public")
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "spaceone", "containerPort": 50061, "protocol": "TCP"} in container["ports"]
    assert {"name": "spaceone", "port": 50061, "targetPort": "spaceone", "protocol": "TCP", "appProtocol": "grpc"} in (
        objects["Service"]["spec"]["ports"]
    )
    # Probes stay on the main port.
    assert container["readinessProbe"]["grpc"]["port"] == 50051


def test_chart_metrics_off(helm):
    objects = by_kind(helm.render(merged(SECURE, {"metrics": {"enabled": False}})))
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert [p["name"] for p in container["ports"]] == ["grpc"]
    assert [p["name"] for p in objects["Service"]["spec"]["ports"]] == ["grpc"]
    assert "POLICYHUB_METRICS_PORT" not in objects["ConfigMap"]["data"]
    assert not any(
        a.startswith("prometheus.io/") for a in objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    )
    assert accepted_by_policyhub(_pod_environment(objects)).metrics_port == 0


def test_chart_service_monitor(helm):
    objects = by_kind(
        helm.render(
            merged(
                SECURE,
                {
                    "metrics": {
                        "scrapeAnnotations": False,
                        "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
                    }
                },
            )
        )
    )
    monitor = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == "policyhub" and monitor["metadata"]["labels"]["release"] == "kps"
    service = objects["Service"]
    # It selects the chart's Service, in its namespace, by the name of its metrics port.
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["test"]}
    assert set(monitor["spec"]) == {"selector", "namespaceSelector", "endpoints"}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert not any(
        a.startswith("prometheus.io/") for a in objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    )


def test_chart_single_replica_has_no_disruption_budget(helm):
    objects = by_kind(helm.render(merged(SECURE, {"autoscaling": {"enabled": False}, "replicaCount": 1})))
    assert "PodDisruptionBudget" not in objects


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mongodb": {"uri": ""}}, "mongodb.uri (or existingSecret) is required"),
        ({"mongodb": {"uri": "postgres://db"}}, "must start with mongodb://"),
        ({"config": {"port": 1}}, "set by the chart"),
        ({"config": {"jwks_file": "/keys"}}, "set by the chart"),
        ({"config": {"spaceone_port": 50061}}, "set by the chart"),
        ({"config": {"metrics_port": 9100}}, "set by the chart"),
        ({"spaceone": {"enabled": True, "containerPort": 50051}}, "spaceone.containerPort must differ"),
        ({"metrics": {"containerPort": 50051}}, "metrics.containerPort must differ"),
        (
            {"metrics": {"containerPort": 50061}, "spaceone": {"enabled": True}},
            "metrics.containerPort must differ from containerPort and spaceone.containerPort",
        ),
        ({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}, "serviceMonitor.enabled needs metrics"),
        ({"auth": {"keys": ""}}, "authentication is on by default and needs the JWT public keys"),
        ({"auth": {"issuer": ""}}, "authentication needs auth.issuer and auth.audience"),
        ({"auth": {"audience": ""}}, "authentication needs auth.issuer and auth.audience"),
        ({"auth": {"existingSecret": "idp-keys"}}, "set auth.keys or auth.existingSecret, not both"),
        ({"existingSecret": "mine"}, "auth.keys is stored in the chart's Secret, which existingSecret replaces"),
        ({"auth": {"developmentMode": True}}, "auth.developmentMode turns authentication off"),
        ({"config": {"jwks_uri": "https://idp.test/jwks"}}, "set by the chart"),
        ({"auth": {"jwksUri": "https://idp.test/jwks"}}, "set auth.jwksUri or the keys"),
        (
            {"auth": {"keys": "", "developmentMode": True, "jwksUri": "https://idp.test/jwks"}},
            "auth.developmentMode turns authentication off",
        ),
    ],
)
def test_chart_refuses_bad_values(helm, overrides, message):
    with pytest.raises(RenderFailed, match=re.escape(message)):
        helm.render(merged(SECURE, overrides))


# ---------------------------------------------------------------- Kubernetes service links


def service_links(service: dict, cluster_ip: str) -> dict[str, str]:
    """The variables Kubernetes gives every pod of the namespace for this Service (docker-link style)."""
    if service["spec"].get("clusterIP") == "None":
        return {}  # headless Services get none
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    ports = service["spec"]["ports"]
    env = {f"{prefix}_SERVICE_HOST": cluster_ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    for port in ports:
        if port.get("name"):
            env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
    for index, port in enumerate(ports):
        protocol = port.get("protocol", "TCP")
        url = f"{protocol.lower()}://{cluster_ip}:{port['port']}"
        if index == 0:
            env[f"{prefix}_PORT"] = url
        link = f"{prefix}_PORT_{port['port']}_{protocol}"
        env[link] = url
        env[f"{link}_PROTO"] = protocol.lower()
        env[f"{link}_PORT"] = str(port["port"])
        env[f"{link}_ADDR"] = cluster_ip
    return env


def test_service_links_of_the_chart_are_the_expected_variables(helm):
    objects = by_kind(helm.render(merged(SECURE, {"spaceone": {"enabled": True}})))
    env = service_links(objects["Service"], "10.96.0.10")
    assert env["POLICYHUB_PORT"] == "tcp://10.96.0.10:50051"
    assert env["POLICYHUB_SERVICE_PORT_METRICS"] == "9090"
    assert env["POLICYHUB_PORT_50061_TCP_ADDR"] == "10.96.0.10"
    assert len(env) == 2 + 3 + 1 + 3 * 4  # host, port, one per named port, the first as a URL, four per port
    assert accepted_by_policyhub(env) == Config()


def test_server_starts_and_serves_under_the_chart_service_links(helm, tmp_path):
    """`python -m policyhub` in a pod of a namespace with the chart's Service and no enableServiceLinks: false."""
    objects = by_kind(helm.render(merged(SECURE, {"spaceone": {"enabled": True}})))
    links = service_links(objects["Service"], "10.96.0.10")
    port, metrics_port = free_port(), free_port()
    config_file = tmp_path / "policyhub.yaml"
    config_file.write_text(
        yaml.safe_dump({"host": "127.0.0.1", "port": port, "metrics_port": metrics_port, "shutdown_grace_seconds": 1})
    )
    with running_policyhub({**links, "POLICYHUB_CONFIG": str(config_file)}, port, tmp_path / "server.log"):
        assert run_healthcheck(str(port)).returncode == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            assert b"policyhub_" in response.read()
