"""One validated settings object, read from ``TRIAGE_*`` environment variables only when built explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.escalation import MergePolicy

DEFAULT_ENCODER_PATH = Path("checkpoints/default/encoder")


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``TRIAGE_<FIELD>`` (e.g. ``TRIAGE_MAX_BATCH_SIZE=64``)."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="forbid", frozen=True)

    encoder_path: Path = Field(DEFAULT_ENCODER_PATH, description="Encoder checkpoint folder to serve.")
    device: str = Field("auto", description="auto (CUDA if present, else CPU), cpu, cuda or cuda:N.")
    dtype: str = Field(
        "auto",
        description="Precision served. auto: bf16 on CUDA; on a CPU, bf16 where it is native (avx512_bf16, AMX), "
        "else int8, kept only if the agreement gate passes (else float32); float32, bfloat16 or int8 (CPU only) "
        "as asked.",
    )
    fast_path_tolerance: float = Field(
        0.5,
        ge=0,
        le=100,
        description="F1 points (micro, against float32's own answers on the agreement sample) the CPU fast path of "
        "dtype=auto may cost before it is refused and float32 is served.",
    )
    fast_path_sample: int = Field(
        256, ge=1, le=100_000, description="Tickets in the fast path's agreement sample (start-up time grows with it)."
    )
    torch_threads: int | None = Field(None, ge=1, description="CPU threads for inference; default: torch's choice.")

    batching: bool = Field(True, description="Dynamic batching; false runs one forward pass per request.")
    max_batch_size: int = Field(32, ge=1, le=4096, description="Most tickets in one encoder forward pass.")
    max_batch_tokens: int = Field(8192, ge=16, description="Most padded tokens (batch x longest) in one pass.")
    max_wait_ms: float = Field(5.0, ge=0, le=10_000, description="Longest a queued ticket waits for a batch to fill.")
    batch_overhead_tokens: float | None = Field(
        None,
        ge=0,
        description="Fixed cost of one forward pass, in tokens, weighed against padding when splitting a queue "
        "into batches; default: measured at start-up.",
    )
    max_queue: int = Field(1024, ge=1, description="Most tickets queued or running; beyond it requests get 429.")
    max_active_requests: int = Field(
        32,
        ge=0,
        description="Most /classify requests inside the server at once; more get 429 before they are parsed "
        "(0: no bound). Under 2x overload this, not the queue bound, keeps the tail short (README, soak).",
    )
    max_queue_wait_s: float = Field(
        5.0,
        ge=0,
        description="Shed load by time: a request whose tickets would wait longer than this behind the queue (at "
        "the measured seconds per ticket) gets 429 with a Retry-After from that estimate; 0: off.",
    )
    request_timeout_s: float = Field(30.0, gt=0, description="Deadline per request; past it the request gets 503.")
    drain_timeout_s: float = Field(
        30.0,
        gt=0,
        description="On SIGTERM: how long `triage serve` keeps serving the requests it had accepted (refusing new "
        "ones with 503 and /ready 503) before it shuts down. Keep it >= TRIAGE_REQUEST_TIMEOUT_S (then every "
        "accepted request is answered) and below the orchestrator's grace period (README, Graceful shutdown).",
    )

    max_text_chars: int = Field(10_000, ge=1, description="Longest ticket text accepted, in characters.")
    max_tickets: int = Field(256, ge=1, description="Most tickets in one request.")
    max_body_bytes: int = Field(
        16 * 2**20, ge=1024, description="Largest request body in bytes; a larger one gets 413 before it is read."
    )
    languages: list[str] = Field(["en", "fr", "de", "nl"], description="Languages the detector may answer.")

    # escalation tier
    llm_backend: Literal["local", "openai", "none"] = Field(
        "local", description="local (base + LoRA in-process), openai (an OpenAI-compatible server) or none."
    )
    llm_adapter_path: Path | None = Field(
        None, description="Adapter folder from `triage train-adapter`; default: the `adapter` beside the encoder."
    )
    llm_base_model: str | None = Field(None, description="Override the adapter manifest's base model.")
    llm_quantization: Literal["auto", "nf4", "mxfp4", "none"] = Field(
        "auto",
        description="auto (CUDA: mxfp4 with its kernels installed, else nf4; CPU: none), nf4 (bitsandbytes 4-bit "
        "experts), mxfp4 (GPT-OSS native) or none.",
    )
    llm_preload: bool = Field(False, description="Load the LLM at start-up instead of on the first escalation.")
    llm_load_wait_s: float = Field(20.0, ge=0, description="How long an escalation waits for a load in progress.")
    llm_timeout_s: float = Field(60.0, gt=0, description="Deadline for the LLM's answer to an escalation.")
    llm_idle_unload_s: float = Field(0.0, ge=0, description="Unload the LLM after this many idle seconds (0: never).")
    llm_max_batch_size: int = Field(8, ge=1, description="Most tickets in one LLM generate call.")
    llm_max_wait_ms: float = Field(50.0, ge=0, description="Longest an escalated ticket waits for its LLM batch.")
    llm_max_new_tokens: int = Field(48, ge=1, description="Token budget of an LLM answer.")
    llm_breaker_failures: int = Field(
        5, ge=0, description="Consecutive failed escalations that open the LLM circuit breaker (0: never)."
    )
    llm_breaker_open_s: float = Field(
        30.0, gt=0, description="How long an open breaker refuses escalations before one trial call."
    )
    llm_endpoint: str = Field("http://127.0.0.1:8001/v1", description="openai backend: the server's /v1 URL.")
    llm_api_key: str | None = Field(None, description="openai backend: bearer token.")
    llm_remote_model: str = Field("triage-adapter", description="openai backend: model (LoRA module) name.")
    escalation_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Escalate tickets whose confidence is below; default: the encoder manifest's (from "
        "`triage calibrate-router`), else 0.25.",
    )
    escalation_max_fraction: float = Field(0.15, ge=0, le=1, description="Most tickets escalated per window.")
    escalation_window_s: float = Field(60.0, gt=0, description="Sliding window of the escalation budget.")
    escalation_max_in_flight: int = Field(32, ge=1, description="Most escalated tickets at the LLM at once.")
    merge_policy: str | None = Field(
        None,
        description="Whose labels win per group or label: e.g. default=llm,emotion=encoder. None: the policy "
        "`calibrate-router --arbitrate` stored in the encoder manifest, else default=llm.",
    )

    def adapter_path(self, encoder: Path | None = None) -> Path:
        """The adapter served with the encoder: the setting, else the ``adapter`` beside ``encoder`` (default: the
        encoder path setting; the server passes the path it resolved, so both come from the same version)."""
        if self.llm_adapter_path is not None:
            return self.llm_adapter_path
        return (self.encoder_path if encoder is None else encoder).parent / "adapter"

    def encoder_options(self) -> dict[str, Any]:
        """``models.encoder.load_for_serving``'s keywords: the server, ``evaluate`` and ``calibrate-router`` load
        the encoder the same way, so they score the precision that is served."""
        return {
            "device": self.device,
            "dtype": self.dtype,
            "threads": self.torch_threads,
            "tolerance": self.fast_path_tolerance,
            "sample_size": self.fast_path_sample,
        }

    api_keys_file: Path | None = Field(
        None, description="JSON file of hashed API keys with scopes (`triage api-key add`); unset: no keys needed."
    )
    public_paths: list[str] = Field(
        ["/health", "/ready", "/metrics"], description="Routes that need no API key when keys are configured."
    )
    key_rate_limit: float = Field(0.0, ge=0, description="Requests per second per API key (0: unlimited).")

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = Field(False, description="One JSON object per log line.")

    @field_validator("merge_policy")
    @classmethod
    def _merge_policy(cls, value: str | None) -> str | None:
        if value is not None:
            MergePolicy.parse(value)  # raises ValueError naming the bad part
        return value

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        if not value or any(len(code) != 2 or not code.isalpha() for code in value):
            raise ValueError("languages must be two-letter ISO 639-1 codes, e.g. en,fr,de,nl")
        return [code.lower() for code in value]
