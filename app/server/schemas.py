"""Wire schemas for requests and responses, apart from the domain types in ``router/``.

Deployment limits (``max_text_chars``, ``max_tickets``) come from Settings and are checked by ``check_limits``
right after schema validation, so one code path reports both kinds of problem with the same error body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.server.errors import ValidationFailed

EXAMPLE_TEXT = "Bonjour, l'appli plante quand j'ouvre la recette du boeuf bourguignon. Je paie Premium !"


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("text must contain at least one non-whitespace character")
    return value


def _valid_unicode(value: str | None) -> str | None:
    """JSON may spell half a UTF-16 pair (``"\\ud800"``); such a string cannot be encoded, tokenised or echoed."""
    if value is None:
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"holds a lone surrogate (U+{ord(value[exc.start]):04X}) at character {exc.start}: "
            "send valid Unicode (a UTF-16 surrogate pair must be complete)"
        ) from None
    return value


def _language_code(value: str | None) -> str | None:
    if value is not None and (len(value) != 2 or not value.isalpha()):
        raise ValueError("language must be a two-letter ISO 639-1 code such as en, fr, de or nl")
    return value.lower() if value else value


TicketText = Annotated[str, AfterValidator(_valid_unicode), AfterValidator(_non_blank)]
TicketId = Annotated[str | None, AfterValidator(_valid_unicode)]
LanguageCode = Annotated[str | None, AfterValidator(_language_code)]


class TicketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: TicketText = Field(description="Ticket text (1 to TRIAGE_MAX_TEXT_CHARS characters, default 10,000).")
    id: TicketId = Field(None, max_length=200, description="Your ticket id, echoed back; generated if absent.")
    language: LanguageCode = Field(None, description="ISO 639-1 code (en, fr, de, nl); detected if absent.")


class ClassifyRequest(BaseModel):
    """Either one ticket (``text``, optional ``id``/``language``) or many (``tickets``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [{"required": ["text"]}, {"required": ["tickets"]}],
            "examples": [
                {"text": EXAMPLE_TEXT, "id": "T-1001"},
                {"text": "Urgent: charged twice and now locked out!!", "escalation": "force"},
                {
                    "tickets": [
                        {"id": "T-1", "text": "I was charged twice this month, please refund!"},
                        {
                            "id": "T-2",
                            "text": "Mijn account is geblokkeerd en ik moet om 18u lesgeven",
                            "language": "nl",
                        },
                    ]
                },
            ],
        },
    )

    text: TicketText | None = Field(None, description="Single-ticket form: the text.")
    id: TicketId = Field(None, max_length=200)
    language: LanguageCode = None
    tickets: list[TicketIn] | None = Field(None, description="Batch form: 1 to TRIAGE_MAX_TICKETS tickets (256).")
    escalation: Literal["auto", "never", "force"] = Field(
        "auto",
        description="auto: low-confidence tickets go to the LLM tier within budget; never: encoder only; "
        "force: every ticket goes to the LLM tier (still limited by the in-flight cap).",
    )

    @model_validator(mode="after")
    def _one_form(self) -> ClassifyRequest:
        if (self.text is None) == (self.tickets is None):
            raise ValueError("give either 'text' (one ticket) or 'tickets' (a list), not both and not neither")
        if self.tickets is not None and (self.id is not None or self.language is not None):
            raise ValueError("with 'tickets', put 'id' and 'language' inside each ticket")
        return self

    def as_tickets(self) -> list[TicketIn]:
        if self.tickets is not None:
            return self.tickets
        assert self.text is not None  # guaranteed by _one_form
        return [TicketIn(text=self.text, id=self.id, language=self.language)]

    def is_batch(self) -> bool:
        return self.tickets is not None


def check_limits(
    request: ClassifyRequest, max_text_chars: int, max_tickets: int, languages: Sequence[str] | None = None
) -> list[TicketIn]:
    """Apply the deployment's limits and languages; raise ValidationFailed naming the offending parameter."""
    tickets = request.as_tickets()
    if not tickets:
        raise ValidationFailed("tickets must hold at least one ticket", param="tickets")
    if len(tickets) > max_tickets:
        raise ValidationFailed(
            f"{len(tickets)} tickets in one request; the limit is {max_tickets} (split the request)", param="tickets"
        )
    for index, ticket in enumerate(tickets):
        if len(ticket.text) > max_text_chars:
            param = f"tickets[{index}].text" if request.is_batch() else "text"
            raise ValidationFailed(
                f"text has {len(ticket.text)} characters; the limit is {max_text_chars}", param=param
            )
        if languages is not None and ticket.language is not None and ticket.language not in languages:
            param = f"tickets[{index}].language" if request.is_batch() else "language"
            raise ValidationFailed(
                f"language {ticket.language!r} is not served here; use one of {', '.join(languages)} "
                "(or leave it out to have it detected)",
                param=param,
            )
    return tickets


def limit_schema(schema: dict[str, Any], max_text_chars: int, max_tickets: int) -> None:
    """State this deployment's limits in the OpenAPI schema of ``ClassifyRequest`` (in place)."""
    props = schema["components"]["schemas"]["ClassifyRequest"]["properties"]
    for option in props["tickets"].get("anyOf", []):
        if option.get("type") == "array":
            option.update(minItems=1, maxItems=max_tickets)
    for name in ("ClassifyRequest", "TicketIn"):
        text = schema["components"]["schemas"][name]["properties"]["text"]
        for option in text.get("anyOf", [text]):
            if option.get("type") == "string":
                option.update(minLength=1, maxLength=max_text_chars)


class TicketResult(BaseModel):
    id: str
    language: str
    labels: list[str] = Field(description="Predicted labels, from the served checkpoint's taxonomy only.")
    scores: dict[str, float] = Field(description="Per-label sigmoid probability (multi-label: they need not sum to 1).")
    confidence: float = Field(description="Smallest normalised margin of any label from its threshold, in [0, 1].")
    decided_by: Literal["encoder", "llm"] = Field(description="Which tier's answer this is.")
    escalated: bool = Field(description="Whether the ticket was sent to the LLM tier.")
    escalation: Literal["not_needed", "done", "skipped_budget", "unavailable", "timeout", "disabled", "failed"] = Field(
        description="What happened to escalation: not_needed (confident, or escalation=never), done (LLM answered), "
        "skipped_budget, unavailable (LLM loading or failed to load), timeout, disabled (no LLM tier), failed."
    )


class ClassifyResponse(BaseModel):
    results: list[TicketResult]
    model_version: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
