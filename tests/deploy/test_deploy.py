"""deploy/: the image, the compose stack, the Helm chart and the container health check.

Offline and fast: nothing is built or pulled. The chart is rendered and linted with Helm's
own Go library through helm-python-sdk (a dev dependency), or with a `helm` binary when one
is on PATH; with neither, the render checks are skipped with a reason and only the static
checks run.
"""

from __future__ import annotations

import base64
import fnmatch
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from concurrent import futures
from pathlib import Path

import grpc
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
        dep for dep in PYPROJECT["project"]["optional-dependencies"]["dev"] if dep.startswith("grpcio-tools==")
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


@pytest.fixture(scope="module")
def policyhub_port(tmp_path_factory):
    """`python -m policyhub` (embedded store) on a free loopback port."""
    port = free_port()
    env = {
        **_clean_env(),
        "POLICYHUB_HOST": "127.0.0.1",
        "POLICYHUB_PORT": str(port),
        "POLICYHUB_SHUTDOWN_GRACE_SECONDS": "1",
    }
    log_path = tmp_path_factory.mktemp("policyhub") / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "policyhub"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
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
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_healthcheck_passes_against_a_running_server(policyhub_port):
    result = run_healthcheck(env={"POLICYHUB_PORT": str(policyhub_port)})
    assert result.returncode == 0, result.stderr
    assert run_healthcheck(str(policyhub_port)).returncode == 0  # the port as an argument


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


class HelmBinary:
    name = "helm binary"

    def __init__(self, path: str):
        self.path = path

    def render(self, overrides: dict, tmp_path: Path) -> list[dict]:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(overrides))
        result = subprocess.run(
            [self.path, "template", "policyhub", str(CHART), "--namespace", "test", "--values", str(values_file)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RenderFailed(result.stderr)
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def lint(self) -> list[str]:
        result = subprocess.run([self.path, "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=60)
        return [] if result.returncode == 0 else [result.stdout + result.stderr]


class HelmLibrary:
    """Helm's Go SDK (v4) through helm-python-sdk."""

    name = "helm-python-sdk"

    def __init__(self, module):
        self.helm = module

    def render(self, overrides: dict, tmp_path: Path) -> list[dict]:
        try:
            rendered = self.helm.Chart.load(str(CHART)).render(
                overrides, name="policyhub", namespace="test", is_install=True
            )
        except self.helm.HelmError as exc:
            raise RenderFailed(str(exc)) from None
        return [
            doc
            for path, text in sorted(rendered.items())
            if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    def lint(self) -> list[str]:
        report = self.helm.lint(str(CHART), strict=True)
        # Severity 1 is informational ("icon is recommended"); 2 is a warning, 3 an error.
        return report["errors"] + [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]


class RenderFailed(Exception):
    pass


@pytest.fixture(scope="module")
def helm():
    path = shutil.which("helm")
    if path:
        return HelmBinary(path)
    try:
        import helm_python
    except ImportError:
        pytest.skip(
            "cannot render the chart: no `helm` binary on PATH and helm-python-sdk (dev dependency) "
            "is not installed; only the static chart checks ran"
        )
    return HelmLibrary(helm_python)


def by_kind(documents: list[dict]) -> dict[str, dict]:
    kinds: dict[str, dict] = {}
    for document in documents:
        assert document["kind"] not in kinds, f"two {document['kind']} objects"
        kinds[document["kind"]] = document
    return kinds


def test_chart_lints(helm):
    assert helm.lint() == []


def test_chart_renders_with_defaults(helm, tmp_path, values):
    objects = by_kind(helm.render({}, tmp_path))
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
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    port = values["containerPort"]
    assert container["ports"] == [{"name": "grpc", "containerPort": port, "protocol": "TCP"}]

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

    # Environment: the ConfigMap (envFrom) and the Secret's URI.
    assert container["envFrom"] == [{"configMapRef": {"name": objects["ConfigMap"]["metadata"]["name"]}}]
    uri_env = {e["name"]: e for e in container["env"]}["POLICYHUB_MONGODB_URI"]
    assert uri_env["valueFrom"]["secretKeyRef"] == {"name": objects["Secret"]["metadata"]["name"], "key": "mongodb-uri"}
    assert "POLICYHUB_JWKS_FILE" not in {e["name"] for e in container["env"]}  # identity is off by default
    assert "POLICYHUB_SPACEONE_PORT" not in objects["ConfigMap"]["data"]  # the SpaceONE listener too

    service = objects["Service"]
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 50051, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
    ]
    assert service["spec"]["selector"] == selector
    assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    metric = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["resource"]
    assert metric["name"] == "cpu" and metric["target"]["type"] == "Utilization"


def _pod_environment(objects: dict[str, dict]) -> dict[str, str]:
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


def test_rendered_configuration_is_accepted_by_policyhub(helm, tmp_path, values):
    uri = "mongodb://user:pw@db-0.db,db-1.db,db-2.db/?replicaSet=rs0&authSource=admin"
    objects = by_kind(helm.render({"mongodb": {"uri": uri}, "config": {"log_level": "DEBUG"}}, tmp_path))
    env = _pod_environment(objects)
    assert all(key.startswith("POLICYHUB_") for key in env)
    config = accepted_by_policyhub(env)
    assert config.host == "0.0.0.0" and config.port == values["containerPort"]
    assert config.mongodb_uri == uri
    assert config.log_level == "DEBUG"
    assert config.max_message_bytes == values["config"]["max_message_bytes"]  # not 4.194304e+06
    assert config.shutdown_grace_seconds == values["config"]["shutdown_grace_seconds"]


def test_chart_identity_keys_are_mounted_and_passed_as_a_file(helm, tmp_path):
    jwks = '{"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}'
    objects = by_kind(
        helm.render(
            {"identity": {"enabled": True, "keys": jwks, "issuer": "https://idp.test", "audience": "policyhub"}},
            tmp_path,
        )
    )
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = env["POLICYHUB_JWKS_FILE"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "identity-keys"]
    assert mount["readOnly"] is True and path == f"{mount['mountPath']}/jwks.json"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "identity-keys"]
    assert volume["secret"]["secretName"] == objects["Secret"]["metadata"]["name"]
    assert volume["secret"]["items"] == [{"key": "keys", "path": "jwks.json"}]
    assert base64.b64decode(objects["Secret"]["data"]["keys"]).decode() == jwks
    config = accepted_by_policyhub(_pod_environment(objects))
    assert (config.jwks_file, config.jwt_issuer, config.jwt_audience) == (path, "https://idp.test", "policyhub")


def test_chart_identity_from_a_jwks_uri_mounts_nothing(helm, tmp_path):
    uri = "https://idp.test/.well-known/jwks.json"
    identity = {"enabled": True, "jwksUri": uri, "issuer": "https://idp.test", "audience": "policyhub"}
    objects = by_kind(helm.render({"identity": identity, "config": {"jwks_refresh_seconds": 600}}, tmp_path))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert all(m["name"] != "identity-keys" for m in container["volumeMounts"])
    assert all(v["name"] != "identity-keys" for v in pod["volumes"])
    config = accepted_by_policyhub(_pod_environment(objects))
    assert (config.jwks_uri, config.jwks_file, config.jwks_refresh_seconds) == (uri, "", 600)
    assert not config.development_mode


def test_chart_existing_secret_and_fixed_replicas(helm, tmp_path):
    objects = by_kind(
        helm.render({"existingSecret": "my-policyhub", "autoscaling": {"enabled": False}, "replicaCount": 3}, tmp_path)
    )
    assert "Secret" not in objects and "HorizontalPodAutoscaler" not in objects
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "my-policyhub"
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_chart_spaceone_listener_has_its_own_port(helm, tmp_path):
    objects = by_kind(helm.render({"spaceone": {"enabled": True, "publicDomainId": "domain-public"}}, tmp_path))
    config = accepted_by_policyhub(_pod_environment(objects))
    assert (config.spaceone_port, config.public_domain_id) == (50061, "domain-public")
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "spaceone", "containerPort": 50061, "protocol": "TCP"} in container["ports"]
    assert {"name": "spaceone", "port": 50061, "targetPort": "spaceone", "protocol": "TCP", "appProtocol": "grpc"} in (
        objects["Service"]["spec"]["ports"]
    )
    # Probes stay on the main port.
    assert container["readinessProbe"]["grpc"]["port"] == 50051


def test_chart_single_replica_has_no_disruption_budget(helm, tmp_path):
    objects = by_kind(helm.render({"autoscaling": {"enabled": False}, "replicaCount": 1}, tmp_path))
    assert "PodDisruptionBudget" not in objects


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mongodb": {"uri": ""}}, "mongodb.uri (or existingSecret) is required"),
        ({"mongodb": {"uri": "postgres://db"}}, "must start with mongodb://"),
        ({"config": {"port": 1}}, "set by the chart"),
        ({"config": {"jwks_file": "/keys"}}, "set by the chart"),
        ({"config": {"spaceone_port": 50061}}, "set by the chart"),
        ({"spaceone": {"enabled": True, "containerPort": 50051}}, "spaceone.containerPort must differ"),
        ({"identity": {"enabled": True}}, "identity.enabled needs identity.keys"),
        ({"config": {"jwks_uri": "https://idp.test/jwks"}}, "set by the chart"),
        (
            {"identity": {"enabled": True, "keys": "{}", "jwksUri": "https://idp.test/jwks"}},
            "identity.keys and identity.jwksUri: set one of them, not both",
        ),
        ({"identity": {"enabled": True, "keys": "{}", "issuer": "x"}}, "needs identity.issuer and identity.audience"),
    ],
)
def test_chart_refuses_bad_values(helm, tmp_path, overrides, message):
    with pytest.raises(RenderFailed, match=re.escape(message)):
        helm.render(overrides, tmp_path)
