"""The Grafana dashboard and the Prometheus alert rules query only what triage exports: every metric and label
they name appears in a live server's /metrics after some traffic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import yaml

from app.server.auth import add_key
from app.server.settings import Settings
from tests.conftest import running_server

DOCKER = Path(__file__).resolve().parent.parent / "docker"
SERIES = re.compile(r"\b(triage_[a-z_]+)(\{[^}]*\})?")
LABEL = re.compile(r'([a-z_]+)\s*(?:=~|!=|=)\s*"')
BY = re.compile(r"by \(([^)]*)\)")


def dashboard_queries() -> list[str]:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "triage.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_queries() -> list[str]:
    rules = yaml.safe_load((DOCKER / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def exported(text: str) -> dict[str, set[str]]:
    """Series name -> label names seen on it, from the Prometheus text format."""
    names: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.setdefault(line.split()[2], set())
        elif line and not line.startswith("#"):
            name = line.split("{", 1)[0].split()[0]
            labels = set(re.findall(r'([a-z_]+)="', line.split("{", 1)[1])) if "{" in line else set()
            names.setdefault(name, set()).update(labels)
    return names


def test_every_dashboard_and_alert_query_names_exported_series(encoder_dir: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    key = add_key(keys, "ops", ["classify", "escalate:force"])
    settings = Settings(encoder_path=encoder_dir, llm_backend="none", api_keys_file=keys)
    with running_server(settings) as url:
        auth = {"authorization": f"Bearer {key}"}
        for body in ({"text": "app crashes"}, {"text": "refund please", "escalation": "force"}, {"text": ""}):
            httpx.post(f"{url}/classify", json=body, headers=auth)
        httpx.post(f"{url}/classify", json={"text": "no key"})  # one refusal, so its series exists
        text = httpx.get(f"{url}/metrics").text
    series = exported(text)
    queries = dashboard_queries() + alert_queries()
    assert len(queries) >= 15
    for query in queries:
        grouped = {label.strip() for group in BY.findall(query) for label in group.split(",") if label.strip()}
        for name, selector in SERIES.findall(query):
            assert name in series, f"{name} (in {query!r}) is not exported"
            used = set(LABEL.findall(selector)) | (grouped - {"le"})
            missing = used - series[name] - ({"le"} if name.endswith("_bucket") else set())
            assert not missing, f"{name} has no label(s) {missing} (in {query!r})"


def test_the_panels_cover_what_operators_watch() -> None:
    text = " ".join(dashboard_queries())
    for needed in (
        "triage_tickets_total",
        "triage_request_duration_seconds_bucket",
        "triage_batch_size_sum",
        "triage_queue_depth",
        "triage_escalations_total",
        "triage_llm_loaded",
        "triage_label_predictions_total",
        "by (language)",
    ):
        assert needed in text
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((DOCKER / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    assert alerts == {
        "TriageNotReady",
        "TriageShedding",
        "TriageEscalationBudgetExhausted",
        "TriageLLMUnavailable",
        "TriageErrorRate",
    }
