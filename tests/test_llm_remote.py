"""The ``openai`` LLM backend against a fake vLLM serving gpt-oss on loopback (real HTTP, real protocol)."""

from __future__ import annotations

import logging
import random
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from transformers import AutoTokenizer

from models import llm_remote
from models.errors import CheckpointError, ModelError
from models.llm import LLM_BACKENDS, LLMConfig, create_llm
from models.llm_local import PromptEncoder
from models.llm_remote import OpenAIClassifier, RemoteLLMError, answer_regex, parse_answer_text
from models.prompt import build_messages, format_answer
from models.taxonomy import load_taxonomy
from models.tiny_llm import FINAL_CHANNEL
from tests.fake_openai import ADAPTER_MODEL, BASE_MODEL, Answer, Content, FakeOpenAI, Labels, Sleep, Status, serve
from tests.llm_fixtures import adapter_dir  # noqa: F401

TAXONOMY = load_taxonomy()
TIMEOUT_S = 0.3


@pytest.fixture(scope="module")
def server(adapter_dir: Path) -> Iterator[tuple[FakeOpenAI, str]]:  # noqa: F811
    fake = FakeOpenAI(tokenizer=AutoTokenizer.from_pretrained(adapter_dir))
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[FakeOpenAI, str]) -> FakeOpenAI:
    server[0].reset()
    return server[0]


@pytest.fixture
def url(server: tuple[FakeOpenAI, str]) -> str:
    return server[1]


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_remote, "BACKOFF_BASE_S", 0.01)


@pytest.fixture
def adapter(adapter_dir: Path) -> Path:  # noqa: F811
    return adapter_dir


@pytest.fixture
def config(url: str, adapter: Path) -> Iterator[object]:
    def make(**overrides: object) -> LLMConfig:
        values: dict[str, object] = {
            "endpoint": url,
            "adapter_path": adapter,
            "timeout_s": TIMEOUT_S,
            "max_retries": 2,
            **overrides,
        }
        return LLMConfig(**values)  # type: ignore[arg-type]

    yield make


@pytest.fixture
def classifier(fake: FakeOpenAI, config: object) -> Iterator[OpenAIClassifier]:
    llm = OpenAIClassifier(config())  # type: ignore[operator]
    llm.load()
    yield llm
    llm.unload()


# -- happy path ------------------------------------------------------------------------------------------------


def test_classify_batch_returns_labels_in_input_order_and_sends_the_trained_prompt(
    fake: FakeOpenAI, classifier: OpenAIClassifier, adapter: Path
) -> None:
    texts = [
        "I was charged twice, please refund asap",
        "The app crashes on my TV",
        "Thanks, all good now",
        "I forgot my password and cannot log in",
        "Je veux résilier mon abonnement",
    ]
    fake.script(Sleep(0.1, Answer()))  # whichever request arrives first answers last: order must still hold
    out = classifier.classify_batch(texts)

    assert out == [["billing", "urgent"], ["technical_issue"], [], ["account_access"], ["cancellation"]]
    bodies = fake.completion_requests
    assert len(bodies) == len(texts) and fake.chat_requests == []
    # the prompt is the local backend's, token for token: what the adapter was trained on
    local = PromptEncoder(AutoTokenizer.from_pretrained(adapter), TAXONOMY, LLMConfig().max_input_tokens)
    expected = {tuple(local.prefix_ids + local.ticket_ids([text])[0]) for text in texts}
    assert {tuple(body["prompt"]) for body in bodies} == expected
    for body in bodies:
        assert fake.prompt_text(body["prompt"]).endswith(FINAL_CHANNEL)
        assert set(body) == {"model", "prompt", "max_tokens", "temperature", "stop_token_ids", "structured_outputs"}
        assert body["stop_token_ids"] == [AutoTokenizer.from_pretrained(adapter).convert_tokens_to_ids("<|return|>")]
        assert body["model"] == ADAPTER_MODEL and body["temperature"] == 0
        assert body["structured_outputs"] == {"regex": answer_regex(TAXONOMY)}
        assert 1 <= body["max_tokens"] <= LLMConfig().max_new_tokens
    assert all("authorization" not in r.headers for r in fake.requests)


def test_the_adapter_supplies_the_taxonomy(classifier: OpenAIClassifier) -> None:
    assert classifier.labels == TAXONOMY.names


def test_gpt_oss_reasons_first_where_the_prompt_does_not_end_in_the_final_channel(fake: FakeOpenAI, url: str) -> None:
    """The fake behaves like gpt-oss: yesterday's request (chat template + JSON schema, 48 tokens) and a raw prompt
    stopping at <|start|>assistant both spend the budget reasoning and end with finish_reason 'length'."""
    messages = build_messages("I was charged twice", TAXONOMY)
    schema = {"type": "object", "properties": {"labels": {"type": "array", "items": {"enum": TAXONOMY.names}}}}
    chat = httpx.post(
        f"{url}/chat/completions",
        json={
            "model": ADAPTER_MODEL,
            "messages": messages,
            "temperature": 0,
            "max_tokens": 48,
            "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
        },
    ).json()["choices"][0]
    assert chat["finish_reason"] == "length" and chat["message"]["content"] is None
    assert chat["message"]["reasoning"]
    raw = httpx.post(
        f"{url}/completions",
        json={"model": ADAPTER_MODEL, "prompt": "<|start|>user<|message|>Ticket:\nrefund<|end|><|start|>assistant"},
    ).json()["choices"][0]
    assert raw["finish_reason"] == "length" and raw["text"].startswith("<|channel|>analysis")


def test_the_answer_grammar_accepts_exactly_the_trained_answers() -> None:
    pattern = re.compile(answer_regex(TAXONOMY))
    rng = random.Random(0)
    for _ in range(200):
        labels = rng.sample(TAXONOMY.names, rng.randint(0, 5))
        answer = format_answer(labels, TAXONOMY)
        assert pattern.fullmatch(answer)
        assert parse_answer_text(answer, TAXONOMY) == [n for n in TAXONOMY.names if n in labels]
    for wrong in ["", "billing,", "billing; urgent", "Billing", "none, billing", "refund"]:
        assert not pattern.fullmatch(wrong), wrong


def test_empty_batch_sends_nothing(fake: FakeOpenAI, classifier: OpenAIClassifier) -> None:
    assert classifier.classify_batch([]) == []
    assert fake.completion_requests == []


def test_load_checks_models_and_sends_bearer_key(fake: FakeOpenAI, config: object) -> None:
    fake.reset(api_key="s3cret")
    llm = OpenAIClassifier(config(api_key="s3cret"))  # type: ignore[operator]
    llm.load()
    assert llm.classify_batch(["billing question"]) == [["billing"]]
    assert [r.path for r in fake.requests] == ["/v1/models", "/v1/completions"]
    assert all(r.headers["authorization"] == "Bearer s3cret" for r in fake.requests)
    llm.unload()


def test_warmup_sends_one_request_and_health_reports_state(fake: FakeOpenAI, config: object, url: str) -> None:
    llm = OpenAIClassifier(config())  # type: ignore[operator]
    assert llm.health() == {
        "backend": "openai",
        "endpoint": url,
        "model": ADAPTER_MODEL,
        "loaded": False,
        "api": "completions",
        "labels": 0,
        "last_error": None,
    }
    llm.load()
    llm.warmup()
    assert len(fake.completion_requests) == 1
    assert llm.health()["loaded"] is True and llm.health()["labels"] == len(TAXONOMY.names)

    fake.script(Status(400, "context too long"))
    with pytest.raises(RemoteLLMError):
        llm.classify_batch(["x"])
    assert "HTTP 400" in str(llm.health()["last_error"])

    llm.unload()
    assert llm.health()["loaded"] is False
    with pytest.raises(RemoteLLMError, match=r"not loaded; call load\(\) first"):
        llm.classify_batch(["x"])


# -- adapter folder --------------------------------------------------------------------------------------------


def test_missing_adapter_says_how_to_fix(fake: FakeOpenAI, config: object, tmp_path: Path) -> None:
    llm = OpenAIClassifier(config(adapter_path=tmp_path / "nowhere"))  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=r"adapter folder at .*nowhere.*Copy the adapter folder"):
        llm.load()
    assert fake.requests == []


def test_an_adapter_for_another_prompt_version_is_refused(
    fake: FakeOpenAI, config: object, adapter: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(adapter, old)
    manifest = json.loads((old / "triage_manifest.json").read_text())
    manifest["extra"]["prompt_version"] = "0"
    (old / "triage_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"prompt version 0, this triage builds prompt version"):
        OpenAIClassifier(config(adapter_path=old)).load()  # type: ignore[operator]


# -- retries ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_retryable_status_then_success(fake: FakeOpenAI, classifier: OpenAIClassifier, status: int) -> None:
    fake.script(Status(status))
    assert classifier.classify_batch(["refund please"]) == [["billing"]]
    assert len(fake.completion_requests) == 2


def test_timeout_then_success(fake: FakeOpenAI, classifier: OpenAIClassifier) -> None:
    fake.script(Sleep(TIMEOUT_S * 3))
    assert classifier.classify_batch(["my password expired"]) == [["account_access"]]
    assert len(fake.completion_requests) == 2


def test_timeouts_exhaust_retries(fake: FakeOpenAI, config: object) -> None:
    llm = OpenAIClassifier(config(max_retries=1))  # type: ignore[operator]
    llm.load()
    fake.script(Sleep(TIMEOUT_S * 3), Sleep(TIMEOUT_S * 3))
    with pytest.raises(
        RemoteLLMError, match=r"timed out after 0.3s.*gave up after 2 attempt\(s\).*raise the LLM timeout"
    ):
        llm.classify_batch(["x"])
    assert len(fake.completion_requests) == 2
    llm.unload()


def test_malformed_answers_are_retried_then_fail(fake: FakeOpenAI, classifier: OpenAIClassifier) -> None:
    fake.script(*[Content("The customer SECRET-TEXT was charged twice")] * 3)
    with pytest.raises(ModelError) as info:
        classifier.classify_batch(["I was charged twice"])
    message = str(info.value)
    assert isinstance(info.value, RemoteLLMError)
    assert classifier.config.endpoint in message
    assert "malformed answer" in message and "outside the taxonomy" in message
    assert "gave up after 3 attempt(s)" in message and "structured_outputs" in message
    assert "SECRET" not in message and "charged" not in message  # never echo what may quote the ticket
    assert len(fake.completion_requests) == 3


def test_malformed_answer_then_valid_recovers(fake: FakeOpenAI, classifier: OpenAIClassifier) -> None:
    fake.script(Content("billing;urgent"), Answer())
    assert classifier.classify_batch(["billing is wrong"]) == [["billing"]]
    assert len(fake.completion_requests) == 2


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (Labels(("billing", "refund_request")), "outside the taxonomy 'eurochef': refund_request"),
        (Labels(("billing", "billing")), "repeats label(s) billing"),
        (Content(""), "is not 'none' nor label names"),
        (Content("billing, , urgent"), "is not 'none' nor label names"),
    ],
)
def test_answers_that_break_the_grammar_fail(
    fake: FakeOpenAI, classifier: OpenAIClassifier, answer: Labels | Content, problem: str
) -> None:
    fake.script(*[answer] * 3)
    with pytest.raises(RemoteLLMError) as info:
        classifier.classify_batch(["x"])
    assert problem in str(info.value)
    assert len(fake.completion_requests) == 3


def test_a_cut_answer_keeps_its_complete_labels(fake: FakeOpenAI, classifier: OpenAIClassifier) -> None:
    fake.script(Content("billing, urgent, frustr", finish_reason="length"))
    assert classifier.classify_batch(["x"]) == [["billing", "urgent"]]


def test_a_cut_answer_without_a_label_fails_at_once_with_the_fix(
    fake: FakeOpenAI, classifier: OpenAIClassifier
) -> None:
    fake.script(Content("<|channel|>analysis<|message|>We need to", finish_reason="length"))
    with pytest.raises(RemoteLLMError, match=r"cut at max_tokens=\d+.*no complete label.*TRIAGE_LLM_MAX_NEW_TOKENS"):
        classifier.classify_batch(["x"])
    assert len(fake.completion_requests) == 1


# -- immediate failures ----------------------------------------------------------------------------------------


def test_wrong_api_key_fails_at_load_without_retries(fake: FakeOpenAI, config: object) -> None:
    fake.reset(api_key="right")
    llm = OpenAIClassifier(config(api_key="wrong"))  # type: ignore[operator]
    with pytest.raises(RemoteLLMError, match=r"GET /models was rejected with HTTP 401.*api key"):
        llm.load()
    assert len(fake.requests) == 1
    assert llm.health()["loaded"] is False


@pytest.mark.parametrize(("status", "hint"), [(401, "api key"), (403, "api key"), (404, "/v1"), (400, "context")])
def test_client_errors_fail_without_retries(
    fake: FakeOpenAI, classifier: OpenAIClassifier, status: int, hint: str
) -> None:
    fake.script(Status(status, "nope"))
    with pytest.raises(RemoteLLMError) as info:
        classifier.classify_batch(["x"])
    message = str(info.value)
    assert f"POST /completions was rejected with HTTP {status}" in message
    assert "nope" in message and hint in message
    assert len(fake.completion_requests) == 1


def test_unknown_model_at_load_lists_what_is_served(fake: FakeOpenAI, config: object, url: str) -> None:
    llm = OpenAIClassifier(config(remote_model="triage-adaptr"))  # type: ignore[operator]
    with pytest.raises(RemoteLLMError) as info:
        llm.load()
    message = str(info.value)
    assert url in message
    assert f"no served model 'triage-adaptr' (found: {BASE_MODEL}, {ADAPTER_MODEL})" in message
    assert "--lora-modules triage-adaptr=" in message
    assert llm.health()["loaded"] is False
    assert fake.completion_requests == []


def test_unreachable_endpoint_is_retried_then_fails(config: object) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAIClassifier(config(endpoint=f"http://127.0.0.1:{port}/v1", max_retries=1))  # type: ignore[operator]
    with pytest.raises(
        RemoteLLMError, match=r"could not connect.*gave up after 2 attempt\(s\).*vLLM server is running"
    ):
        llm.load()


def test_batch_fails_if_any_ticket_fails(fake: FakeOpenAI, classifier: OpenAIClassifier) -> None:
    fake.script(Status(401))
    with pytest.raises(RemoteLLMError, match="HTTP 401"):
        classifier.classify_batch(["a", "b", "c"])


# -- logging, registry -----------------------------------------------------------------------------------------


def test_retries_are_logged_without_ticket_text(
    fake: FakeOpenAI, classifier: OpenAIClassifier, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(Status(500), Content("SECRET-CUSTOMER-TEXT"))
    with caplog.at_level(logging.DEBUG):
        assert classifier.classify_batch(["SECRET-CUSTOMER-TEXT about billing"]) == [["billing"]]
    warnings = [r.getMessage() for r in caplog.records if r.name == "models.llm_remote"]
    assert len(warnings) == 2 and "HTTP 500" in warnings[0] and "outside the taxonomy" in warnings[1]
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


def test_openai_backend_is_registered(config: object) -> None:
    assert isinstance(LLM_BACKENDS["openai"](config()), OpenAIClassifier)  # type: ignore[operator]


def test_create_llm_returns_the_openai_backend(config: object) -> None:
    llm = create_llm("openai", config())  # type: ignore[operator]
    assert isinstance(llm, OpenAIClassifier)
    assert llm.health()["loaded"] is False


def test_retries_stop_at_the_callers_deadline(fake: FakeOpenAI, config: object) -> None:
    """A hanging server: one attempt cut to what is left of the deadline, no retry after it, a clear error."""
    llm = OpenAIClassifier(config(timeout_s=60.0, max_retries=5))  # type: ignore[operator]
    llm.load()
    try:
        fake.script(*[Sleep(3.0, then=Labels(("billing",)))] * 6)
        started = time.monotonic()
        with pytest.raises(RemoteLLMError, match="deadline passed after 1 attempt"):
            llm.classify_batch(["charged twice"], deadline=started + 0.5)
        assert time.monotonic() - started < 3.0  # never waited for the 3 s answer, let alone 5 retries of it
        assert len(fake.completion_requests) == 1
    finally:
        llm.unload()
