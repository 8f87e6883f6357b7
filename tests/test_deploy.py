"""The deployment files (docker/ and deploy/k8s/) checked offline: every YAML parses; compose files validate against
the Compose Specification and the manifests against the Kubernetes schemas; they name only real TRIAGE_* settings,
real routes and a real metric; the scale-out pieces agree with each other and with README's vLLM command line; and
the nginx config, run by a real nginx, balances /classify over two real triage servers and skips one that is not
ready or down. Without an nginx binary (``apt-get install nginx``; .ci/run installs it) the nginx tests skip.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from fastapi.routing import APIRoute

from app.server.main import create_app
from app.server.settings import Settings
from tests.conftest import running_server
from tests.servers import free_port
from tests.test_dashboard import exported

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILES = sorted(DOCKER.glob("compose*.yaml"))
K8S_VERSION = "1.31.0"  # as the Makefile's K8S_VERSION
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="no nginx binary: apt-get install --no-install-recommends nginx (.ci/run does)"
)
SETTINGS = {f"TRIAGE_{name.upper()}" for name in Settings.model_fields}
UPSTREAM = re.compile(r"^\s*server\s+([\w.-]+):(\d+)\b", re.MULTILINE)
LISTEN = re.compile(r"^(\s*)listen\s+8000;", re.MULTILINE)


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_all(path)]


def manifest(kind: str, name: str) -> dict[str, Any]:
    (found,) = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def compose(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DOCKER / name).read_text())
    return loaded


def env_names(node: Any) -> set[str]:
    """Every environment variable name set anywhere in a compose file or manifest."""
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "environment" and isinstance(value, dict):
                names |= set(value)
            elif key == "environment" and isinstance(value, list):
                names |= {item.split("=", 1)[0] for item in value}
            elif key == "env" and isinstance(value, list):
                names |= {item["name"] for item in value}
            else:
                names |= env_names(value)
    elif isinstance(node, list):
        for item in node:
            names |= env_names(item)
    return names


def unknown_settings(names: set[str]) -> set[str]:
    return {name for name in names if name.startswith("TRIAGE_") and name not in SETTINGS}


def flags(args: list[str]) -> dict[str, list[str]]:
    """A command line's options: ``--flag`` -> the values that follow it."""
    parsed: dict[str, list[str]] = {}
    current = ""
    for arg in args:
        if arg.startswith("--"):
            current = arg
            parsed[current] = []
        elif current:
            parsed[current].append(arg)
    return parsed


def readme_vllm_command() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("vllm serve "))
    command = []
    for line in lines[start:]:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    return shlex.split(" ".join(command))[2:]  # without `vllm serve`


def test_every_yaml_parses_and_names_only_real_settings() -> None:
    files = [*DOCKER.rglob("*.y*ml"), *K8S.glob("*.y*ml")]
    assert len(files) >= 10
    for path in files:
        docs = load_all(path)
        assert docs, f"{path} is empty"
        unknown = unknown_settings(env_names(docs))
        assert not unknown, f"{path.relative_to(ROOT)} sets {unknown}, which are not settings (app/server/settings.py)"
    assert unknown_settings({"TRIAGE_LLM_ENDPOINT", "TRIAGE_LLM_URL"}) == {"TRIAGE_LLM_URL"}


def check_jsonschema() -> str:
    found = Path(sys.executable).parent / "check-jsonschema"
    return str(found) if found.exists() else shutil.which("check-jsonschema") or "check-jsonschema"


def test_compose_files_follow_the_compose_specification(tmp_path: Path) -> None:
    assert {p.name for p in COMPOSE_FILES} >= {"compose.yaml", "compose.gpu.yaml", "compose.scale.yaml"}
    run = [check_jsonschema(), "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run([*run, *map(str, COMPOSE_FILES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text((DOCKER / "compose.yaml").read_text().replace("    image: prom/", "    imagee: prom/"))
    result = subprocess.run([*run, str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "'imagee' was unexpected" in result.stdout


def test_manifests_follow_the_kubernetes_schemas() -> None:
    kinds = set()
    for doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.add(doc["kind"])
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim"}
    typo = manifest("Service", "triage") | {"spec": {"selectr": {"app": "triage"}}}
    with pytest.raises(kubernetes_validate.ValidationError, match="'selectr' was unexpected"):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)


def test_the_deployment_probes_real_routes_and_wires_its_volumes(tmp_path: Path) -> None:
    settings = Settings(encoder_path=tmp_path / "none")
    app = create_app(settings)
    get_routes = {route.path for route in app.routes if isinstance(route, APIRoute) and "GET" in (route.methods or ())}
    deployment = manifest("Deployment", "triage")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"  # 503 while loading: no traffic yet
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"  # not /ready: a loading pod is alive
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in get_routes
        assert container[probe]["httpGet"]["port"] in ports
        assert container[probe]["httpGet"]["path"] in settings.public_paths
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1

    env = {item["name"]: item for item in container["env"]}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    checkpoints = mounts["/checkpoints"]
    assert checkpoints["readOnly"] is True
    claim = volumes[checkpoints["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True and manifest("PersistentVolumeClaim", claim["claimName"])
    assert env["TRIAGE_ENCODER_PATH"]["value"].startswith("/checkpoints/")
    keys_file = Path(env["TRIAGE_API_KEYS_FILE"]["value"])
    secret = volumes[mounts[str(keys_file.parent)]["name"]]["secret"]
    assert keys_file.name in {item["path"] for item in secret["items"]}
    assert env["TRIAGE_LLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == secret["secretName"]

    service = manifest("Service", "triage")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= set(ports)
    endpoint = httpx.URL(env["TRIAGE_LLM_ENDPOINT"]["value"])
    vllm = manifest("Service", endpoint.host)
    assert endpoint.port in {port["port"] for port in vllm["spec"]["ports"]}


def test_the_autoscaler_scales_the_deployment_on_an_exported_gauge(server: str) -> None:
    httpx.post(f"{server}/classify", json={"text": "the app crashes"}, timeout=30)
    text = httpx.get(f"{server}/metrics").text
    hpa = manifest("HorizontalPodAutoscaler", "triage")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", manifest("Deployment", "triage")["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    name = metric["pods"]["metric"]["name"]
    assert f"# TYPE {name} gauge" in text, f"{name} is not a gauge triage exports"
    selector = metric["pods"]["metric"]["selector"]["matchLabels"]
    for label, value in selector.items():
        assert f'{label}="{value}"' in text.split(f"# TYPE {name} gauge", 1)[1].split("# HELP", 1)[0]
    assert set(selector) <= exported(text)[name]


def test_scale_out_pieces_agree() -> None:
    scale = compose("compose.scale.yaml")["services"]
    replicas = sorted(name for name in scale if re.fullmatch(r"triage-\d+", name))
    assert len(replicas) == 2
    nginx_conf = (DOCKER / "nginx" / "nginx.conf").read_text()
    assert sorted(UPSTREAM.findall(nginx_conf)) == [(name, "8000") for name in replicas]
    assert scale["nginx"]["depends_on"] == {name: {"condition": "service_healthy"} for name in replicas}
    assert scale["triage"]["profiles"], "the single triage of compose.yaml must stay off (its port is nginx's)"
    assert scale["nginx"]["ports"] == compose("compose.yaml")["services"]["triage"]["ports"]

    prometheus = yaml.safe_load((DOCKER / "prometheus.scale.yml").read_text())
    assert prometheus["rule_files"] == yaml.safe_load((DOCKER / "prometheus.yml").read_text())["rule_files"]
    (job,) = prometheus["scrape_configs"]
    assert sorted(job["static_configs"][0]["targets"]) == [f"{name}:8000" for name in replicas]
    mounts = [volume.split(":")[:2] for volume in scale["prometheus"]["volumes"]]
    assert ["./prometheus.scale.yml", "/etc/prometheus/prometheus.yml"] in mounts

    readme = flags(readme_vllm_command())
    env = scale[replicas[0]]["environment"]
    assert all(scale[name]["environment"] == env for name in replicas)
    endpoint = httpx.URL(env["TRIAGE_LLM_ENDPOINT"])
    (k8s_vllm,) = manifest("Deployment", "vllm")["spec"]["template"]["spec"]["containers"]
    (k8s_triage,) = manifest("Deployment", "triage")["spec"]["template"]["spec"]["containers"]
    k8s_env = {item["name"]: item.get("value") for item in k8s_triage["env"]}
    for where, args, adapter_path in (
        ("compose.scale.yaml", scale[endpoint.host]["command"], env["TRIAGE_LLM_ADAPTER_PATH"]),
        ("deploy/k8s/vllm.yaml", k8s_vllm["args"], k8s_env["TRIAGE_LLM_ADAPTER_PATH"]),
    ):
        vllm = flags(args)
        assert args[0] == "openai/gpt-oss-20b"
        assert vllm.keys() == readme.keys(), f"{where}: vLLM flags differ from README's command line"
        for flag in vllm.keys() - {"--lora-modules", "--host", "--api-key"}:
            assert vllm[flag] == readme[flag], f"{where}: {flag} {vllm[flag]} differs from README's {readme[flag]}"
        assert vllm["--port"] == [str(endpoint.port)]
        (module,) = vllm["--lora-modules"]
        assert module == f"{env['TRIAGE_LLM_REMOTE_MODEL']}={adapter_path}", where
    for name in ("TRIAGE_LLM_BACKEND", "TRIAGE_LLM_REMOTE_MODEL", "TRIAGE_ENCODER_PATH", "TRIAGE_LLM_ADAPTER_PATH"):
        assert k8s_env[name] == env[name], f"{name}: deploy/k8s/triage.yaml and compose.scale.yaml differ"
    assert env["TRIAGE_LLM_BACKEND"] == "openai" and endpoint.path == "/v1"


@contextmanager
def nginx(upstreams: list[str], workdir: Path) -> Iterator[str]:
    """docker/nginx/nginx.conf run by a real nginx on loopback, its two upstream servers replaced by ``upstreams``
    and its port by a free one (plus temp and pid paths in ``workdir``, so it runs without root)."""
    assert NGINX is not None
    conf = (DOCKER / "nginx" / "nginx.conf").read_text()
    found = UPSTREAM.findall(conf)
    assert len(found) == len(upstreams), f"expected {len(upstreams)} upstream servers, found {found}"
    for (host, port), upstream in zip(found, upstreams, strict=True):
        conf = conf.replace(f"server {host}:{port}", f"server {upstream}", 1)
    port = free_port()
    conf, listens = LISTEN.subn(rf"\1listen 127.0.0.1:{port};", conf)
    assert listens == 1, "expected one `listen 8000;` in docker/nginx/nginx.conf"
    temp = "".join(
        f"    {kind}_temp_path {workdir}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = conf.replace("http {\n", "http {\n" + temp, 1)
    (workdir / "nginx.conf").write_text(conf)
    log = workdir / "nginx.log"
    base = [NGINX, "-p", f"{workdir}/", "-c", str(workdir / "nginx.conf"), "-e", "stderr"]
    check = subprocess.run(
        [*base, "-t", "-g", f"pid {workdir}/nginx.pid;"], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    with log.open("w") as out:
        process = subprocess.Popen([*base, "-g", f"daemon off; pid {workdir}/nginx.pid;"], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def classified(url: str, status: int) -> int:
    """How many /classify requests ``url`` answered with ``status``, from its own /metrics."""
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf'^triage_requests_total{{route="/classify",status="{status}"}} (\S+)$', text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


@needs_nginx
def test_nginx_config_is_refused_when_broken(tmp_path: Path) -> None:
    """`nginx -t` (as the fixture runs it) can fail: a misspelt directive is refused, naming it."""
    assert NGINX is not None
    broken = (DOCKER / "nginx" / "nginx.conf").read_text().replace("least_conn;", "least_con;")
    (tmp_path / "nginx.conf").write_text(broken)
    args = [NGINX, "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"]
    result = subprocess.run([*args, "-g", f"pid {tmp_path}/nginx.pid;"], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and 'unknown directive "least_con"' in result.stderr


@needs_nginx
def test_nginx_balances_classify_over_two_replicas_and_skips_one_not_ready_or_down(
    encoder_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(encoder_path=encoder_dir, llm_backend="none", max_wait_ms=5)
    failed = Settings(encoder_path=tmp_path / "no-checkpoint", llm_backend="none")
    with (
        running_server(settings) as one,
        running_server(settings) as two,
        running_server(failed, wait_ready=False) as not_ready,
    ):
        assert httpx.get(f"{not_ready}/ready").status_code == 503
        hosts = [url.removeprefix("http://") for url in (one, two, not_ready)]
        body = {"text": "the app crashes when I pay"}

        (tmp_path / "both").mkdir()
        with nginx(hosts[:2], tmp_path / "both") as lb:
            statuses = [httpx.post(f"{lb}/classify", json=body, timeout=30).status_code for _ in range(20)]
            assert statuses == [200] * 20
            counts = [classified(one, 200), classified(two, 200)]
            assert sum(counts) == 20 and min(counts) > 0, f"not balanced over both replicas: {counts}"
            assert httpx.get(f"{lb}/ready").json()["status"] == "ready"
            echoed = httpx.post(f"{lb}/classify", json=body, headers={"x-request-id": "lb-4711"}, timeout=30)
            assert echoed.headers["x-request-id"] == "lb-4711"

        (tmp_path / "not-ready").mkdir()
        with nginx([hosts[0], hosts[2]], tmp_path / "not-ready") as lb:
            before = classified(one, 200)
            statuses = [httpx.post(f"{lb}/classify", json=body, timeout=30).status_code for _ in range(10)]
            assert statuses == [200] * 10, "a request that met the replica still loading was not retried"
            assert classified(not_ready, 503) >= 1, "nginx never tried the replica that is not ready"
            assert classified(one, 200) - before == 10

        (tmp_path / "down").mkdir()
        with nginx([hosts[0], f"127.0.0.1:{free_port()}"], tmp_path / "down") as lb:
            statuses = [httpx.post(f"{lb}/classify", json=body, timeout=30).status_code for _ in range(10)]
            assert statuses == [200] * 10, "a request that met the stopped replica was not retried"
