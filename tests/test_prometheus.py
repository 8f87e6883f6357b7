"""A real Prometheus (the Debian package's binary) scrapes a real triage server with the repo's own scrape config and
alert rules, and every Grafana panel's query runs against what it stored.

The config is docker/prometheus.yml with only the target (the loopback server), the scrape interval (1 s) and the
rule evaluation interval (1 s) changed; the rule file is the repo's docker/alerts.yml, found through the mount in
docker/compose.yaml, so Prometheus refuses to start if a rule does not parse. Without a ``prometheus`` binary on
PATH the tests skip (``apt-get install prometheus``; .ci/run installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.server.auth import add_key
from app.server.settings import Settings
from tests.conftest import running_server
from tests.servers import free_port
from tests.test_dashboard import DOCKER, alert_queries, dashboard_queries

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="no prometheus binary on PATH: apt-get install --no-install-recommends prometheus (.ci/run does)",
)
DEADLINE_S = 90.0  # generous: the waits below end as soon as their condition holds
GRAFANA_INTERVALS = re.compile(r"\$\{?__(rate_interval|interval|range)\}?")
GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")

# Panels that legitimately have no series after the traffic below, and why. Keep it short and true.
NO_DATA: dict[str, str] = {}


def grafana_to_promql(query: str) -> str:
    """A dashboard query with Grafana's variables replaced: intervals by 1m, template variables by ``.*``."""
    query = GRAFANA_VARIABLE.sub(".*", GRAFANA_INTERVALS.sub("1m", query))
    assert "$" not in query, f"unsubstituted Grafana variable in {query!r}"
    return query


def test_grafana_to_promql_substitutes_variables() -> None:
    assert grafana_to_promql('rate(x{language=~"$language"}[$__rate_interval])') == 'rate(x{language=~".*"}[1m])'
    assert grafana_to_promql("sum(rate(x[${__interval}]))") == "sum(rate(x[1m]))"


def container_to_repo_paths() -> dict[str, Path]:
    """Where the Prometheus container of docker/compose.yaml sees each repo file (its read-only mounts)."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    paths = {}
    for volume in compose["services"]["prometheus"]["volumes"]:
        source, target = volume.split(":")[:2]
        paths[target] = (DOCKER / source).resolve()
    return paths


def scrape_config(target: str) -> dict[str, Any]:
    """docker/prometheus.yml, scraping ``target`` every second, with its rule files mapped to the repo's."""
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    mounts = container_to_repo_paths()
    missing = [rule for rule in config["rule_files"] if rule not in mounts]
    assert not missing, f"rule files {missing} are not mounted into the prometheus service in compose.yaml"
    config["rule_files"] = [str(mounts[rule]) for rule in config["rule_files"]]
    config.setdefault("global", {})["evaluation_interval"] = "1s"
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "triage"]
    job["scrape_interval"] = "1s"
    (static,) = job["static_configs"]
    assert len(static["targets"]) == 1, f"expected one triage target, found {static['targets']}"
    static["targets"] = [target]
    return config


def wait_for(what: str, condition: Any, log: Path | None = None) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail naming ``what`` (and the log's tail)."""
    deadline = time.monotonic() + DEADLINE_S
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    pytest.fail(f"{what}: not so after {DEADLINE_S:.0f} s (last seen: {last!r})\n{tail}")


@contextmanager
def prometheus(config: dict[str, Any], workdir: Path) -> Iterator[str]:
    """A Prometheus server on a free loopback port for ``config``; yields its URL once it answers /-/ready."""
    assert PROMETHEUS is not None
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    log = workdir / "prometheus.log"
    url = f"http://127.0.0.1:{free_port()}"
    args = [
        PROMETHEUS,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--log.level=warn",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("prometheus answers /-/ready", ready, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def query(prom: str, promql: str) -> list[dict[str, Any]]:
    """One instant query; fails unless Prometheus answers status success."""
    response = httpx.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{promql!r}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def scrapes(prom: str, target: str) -> int:
    """How many times Prometheus has scraped ``target`` successfully in the last 5 minutes (0 while it is down)."""
    targets = httpx.get(f"{prom}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    mine = [t for t in targets if t["labels"]["instance"] == target]
    if not mine or mine[0]["health"] != "up":
        return 0
    samples = query(prom, f'sum_over_time(up{{job="triage",instance="{target}"}}[5m])')
    return int(float(samples[0]["value"][1])) if samples else 0


def traffic(url: str, key: str) -> None:
    """Classified, escalated (forced; llm_backend none answers it unavailable), invalid and unauthenticated."""
    auth = {"authorization": f"Bearer {key}"}
    for body in (
        {"text": "the app crashes when I pay"},
        {"tickets": [{"text": "refund please"}, {"text": "mon colis est en retard"}]},
        {"text": "refund please", "escalation": "force"},
        {"text": ""},
    ):
        httpx.post(f"{url}/classify", json=body, headers=auth, timeout=30)
    assert httpx.post(f"{url}/classify", json={"text": "no key"}, timeout=30).status_code == 401


@needs_prometheus
def test_prometheus_scrapes_triage_and_every_panel_query_runs(encoder_dir: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "ops", ["classify", "escalate:force"])
    settings = Settings(encoder_path=encoder_dir, llm_backend="none", api_keys_file=keys, max_wait_ms=5)
    with running_server(settings) as url:
        target = url.removeprefix("http://")
        traffic(url, key)
        with prometheus(scrape_config(target), tmp_path) as prom:
            log = tmp_path / "prometheus.log"
            wait_for("triage's target is up and scraped once", lambda: scrapes(prom, target) >= 1, log)
            traffic(url, key)  # after a scrape, so the counters' rates are above zero
            wait_for("two more scrapes of triage", lambda: scrapes(prom, target) >= 3, log)

            empty = []
            for panel_query in dashboard_queries():
                promql = grafana_to_promql(panel_query)
                if not query(prom, promql) and promql not in NO_DATA:
                    empty.append(promql)
            assert not empty, f"dashboard queries without data after traffic: {empty}"
            for promql in NO_DATA:
                assert promql in map(grafana_to_promql, dashboard_queries()), f"stale NO_DATA entry {promql!r}"

            (tickets,) = query(prom, 'sum(rate(triage_tickets_total{decided_by="encoder"}[1m]))')
            assert float(tickets["value"][1]) > 0, "the ticket counter did not grow between scrapes"
            for alert in alert_queries():
                query(prom, alert)  # status success: each alert expression is valid PromQL over these series

            def rules_evaluated() -> list[tuple[str, str]]:
                groups = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
                rules = [(rule["name"], rule["health"]) for group in groups for rule in group["rules"]]
                return rules if rules and all(health != "unknown" for _, health in rules) else []

            rules = wait_for("the alert rules are loaded and evaluated", rules_evaluated, log)
            assert {name for name, _ in rules} == {
                rule["alert"]
                for group in yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"]
                for rule in group["rules"]
            }
            assert all(health == "ok" for _, health in rules), rules
            firing = httpx.get(f"{prom}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            assert not [a for a in firing if a["labels"]["alertname"] == "TriageNotReady"], firing


@pytest.mark.skipif(PROMTOOL is None, reason="no promtool on PATH: it comes with the Debian package prometheus")
def test_promtool_accepts_the_config_and_the_rules(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    rules = subprocess.run(
        [PROMTOOL, "check", "rules", str(DOCKER / "alerts.yml")], capture_output=True, text=True, check=False
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 5 rules found" in rules.stdout + rules.stderr
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(scrape_config("127.0.0.1:8000")))
    config = subprocess.run(
        [PROMTOOL, "check", "config", str(config_file)], capture_output=True, text=True, check=False
    )
    assert config.returncode == 0, config.stdout + config.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="no promtool on PATH: it comes with the Debian package prometheus")
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: the same rules with one expression broken are refused, naming the problem."""
    assert PROMTOOL is not None
    rules = yaml.safe_load((DOCKER / "alerts.yml").read_text())
    rules["groups"][0]["rules"][0]["expr"] = "max(triage_ready) =="
    broken = tmp_path / "alerts.yml"
    broken.write_text(yaml.safe_dump(rules))
    result = subprocess.run([PROMTOOL, "check", "rules", str(broken)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "parse error" in result.stdout + result.stderr
