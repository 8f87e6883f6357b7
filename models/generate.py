"""A reproducible generator of synthetic multilingual EuroChef+ support tickets.

EuroChef+ is a fictional European culinary streaming service (cooking shows, chefs, recipes, live classes;
Free, Premium at €12.99/month, Family and Enterprise plans). Tickets are built compositionally:

1. labels are sampled with priors and co-occurrences (:func:`_sample_labels`), including a few tickets with
   no topic at all (pure praise);
2. each label contributes one fragment in the ticket's language: most often a realisation of one of the label's
   *scenario families* (a situation told explicitly or only implied: a class tonight for ``urgent``, "third
   mail" for ``frustrated``), otherwise an explicit cue; both are filled from vocabularies (dishes, chefs,
   shows, devices, error codes, prices, dates...);
3. fragments are assembled with optional greetings, label-free context sentences, *distractors* (label-free
   sentences that use a label's words without carrying it: a recipe's price is not billing), sign-offs and
   signatures, in one of three styles (terse one-liner, plain message, e-mail);
4. the mess of real support is added: typos, lower case, CAPS, missing punctuation or accents, emoji,
   English tech words in French, German and Dutch;
5. a little label noise: a few training tickets lose one of their labels, as hurried annotators do.

The wording is data, the assembly is code. ``models/phrases/<lang>.json`` holds one language's explicit cue
pools, fillers, greetings, sign-offs, names, connectors, vocabularies, month names, date and money formats and
noise tables; ``models/phrases/scenes_<lang>.json`` its scenario families, distractors and context sentences;
``models/phrases/shared.json`` the language-independent vocabularies and emoji. :func:`phrase_book` reads them
on first use (never at import) and checks them against :data:`LANGUAGE_SCHEMA`, :data:`SCENES_SCHEMA` and
:data:`SHARED_SCHEMA`; label priors, generated slots (amounts, dates, error codes) and noise rates stay here.

Held out for ``test_heldout`` (and never used by the other splits): every fourth *scenario family* of each label
and every fifth explicit cue, so a model's score there measures generalisation to situations, not only
phrasings, it never saw.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from tqdm import tqdm

from models.augment import typos
from models.datasets import Example, write_jsonl
from models.errors import DataError
from models.taxonomy import Taxonomy, load_taxonomy

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "2"
LANGUAGE_WEIGHTS: dict[str, float] = {"en": 0.40, "de": 0.25, "fr": 0.20, "nl": 0.15}

TOPICS = ("technical_issue", "billing", "account_access", "content_request", "feature_request", "cancellation")
URGENCY = ("urgent", "low_priority")
USER_TYPES = ("premium_user", "free_user", "enterprise")
EMOTIONS = ("frustrated", "aggressive", "confused", "satisfied")
LABELS = TOPICS + URGENCY + USER_TYPES + EMOTIONS

HELDOUT_EVERY = 5
"""Template ``i`` of every cue pool is held out when ``i % HELDOUT_EVERY == HELDOUT_EVERY - 1``."""
HELDOUT_FAMILY_EVERY = 4
"""Scenario family ``j`` of a label (in file order) is held out when ``j % 4 == 3``."""
EXPLICIT_P = 0.3
"""Probability that a label is expressed by an explicit cue rather than a scenario family's realisation."""
PRAISE_ONLY_P = 0.03
"""Tickets with no topic: praise (``satisfied``), perhaps with a user type."""
LABEL_NOISE_P = 0.02
"""Training tickets that lose one label (never the only one): annotation noise the model must tolerate."""

MIN_TICKETS = 10

# ---------------------------------------------------------------------------------------------------------------
# Phrase files: the language data lives in models/phrases/<lang>.json and shared.json. Here are their schema,
# the loader that checks them against it, and the typed view the generator reads.
# ---------------------------------------------------------------------------------------------------------------

PHRASES_PACKAGE = "models.phrases"
SHARED_FILE = "shared.json"
SCENES_FILE = "scenes_{lang}.json"
MIN_TOPIC_TEMPLATES = 12
MIN_CUE_TEMPLATES = 8
MIN_FILLERS = 3  # a ticket takes up to three, drawn without replacement
EMOJI_MOODS = ("aggressive", "frustrated", "confused", "satisfied", "urgent")
"""Labels with their own emoji pool, in precedence order; a ticket with none of them draws from ``none``."""

STRINGS = "a list of strings"
POOLS = "an object of string lists"
FAMILIES = "an object of labels, each an object of scenario families (string lists)"
MAPPING = "an object of strings"
TEXT = "a string"


@dataclass(frozen=True)
class Field:
    """What one key of a phrase file must hold.

    ``min_items``/``max_items`` bound the entries of a list or object (for ``POOLS``: of each pool). ``required``
    names the pools a ``POOLS`` key must have, each with its own minimum; ``closed`` forbids any other pool.
    ``slots``: the strings are templates whose ``{slot}`` names must be generated slots or vocabularies; otherwise
    a string may not contain anything that looks like a slot. ``format_fields``: the strings are ``str.format``
    patterns over these fields and must use ``format_needs``.
    """

    kind: str
    min_items: int = 1
    max_items: int | None = None
    required: Mapping[str, int] = dataclass_field(default_factory=dict)
    closed: bool = False
    unique: bool = False
    slots: bool = False
    format_fields: tuple[str, ...] = ()
    format_needs: str = ""


LANGUAGE_SCHEMA: dict[str, Field] = {
    # label -> cue templates. Topic templates must not reveal urgency, user type or emotion; the other cue
    # templates must not reveal a topic. Duplicates would land on both sides of the held-out split.
    "cues": Field(
        POOLS,
        required={label: MIN_TOPIC_TEMPLATES if label in TOPICS else MIN_CUE_TEMPLATES for label in LABELS},
        closed=True,
        unique=True,
        slots=True,
    ),
    "fillers": Field(STRINGS, min_items=MIN_FILLERS, slots=True),  # label-free: must carry no cue for any label
    "greetings": Field(STRINGS),
    "signoffs": Field(STRINGS),
    "names": Field(STRINGS),
    "sent_from": Field(STRINGS),
    # Connectors ending in a space lower-case the next fragment; German ones end with a colon (verb-second order).
    "connectors": Field(STRINGS),
    "vocab": Field(POOLS),  # slot -> values; a language's pool wins over shared.json's of the same name
    "months": Field(STRINGS, min_items=12, max_items=12),
    "date_formats": Field(STRINGS, format_fields=("day", "month", "month_name"), format_needs="day"),
    "decimal_separator": Field(TEXT),
    "money_formats": Field(STRINGS, format_fields=("value",), format_needs="value"),
    "code_switch": Field(MAPPING, min_items=0),  # English tech words that creep in (whole words only)
    "accent_folds": Field(MAPPING, min_items=0),  # applied half the time before accents are stripped
    "keep_case": Field(STRINGS, min_items=0),  # first words a connector must not lower-case
}
"""The schema of ``models/phrases/<lang>.json``: every key is required and no other is allowed."""

MIN_TOPIC_FAMILIES = 8
MIN_FAMILIES = 6
MIN_REALISATIONS = 6
SCENES_SCHEMA: dict[str, Field] = {
    # label -> family -> realisations. Topic realisations must not reveal urgency, user type or emotion, and the
    # others no topic; at least half of each label's realisations imply the label without naming it.
    "families": Field(
        FAMILIES,
        min_items=MIN_REALISATIONS,
        required={label: MIN_TOPIC_FAMILIES if label in TOPICS else MIN_FAMILIES for label in LABELS},
        closed=True,
        unique=True,
        slots=True,
    ),
    "distractors": Field(STRINGS, min_items=40, unique=True, slots=True),  # a label's words, none of its meaning
    "context": Field(STRINGS, min_items=40, unique=True, slots=True),  # label-free narrative sentences
}
"""The schema of ``models/phrases/scenes_<lang>.json``: every key is required and no other is allowed."""

SHARED_SCHEMA: dict[str, Field] = {
    "vocab": Field(POOLS, required={"username": 1, "domain": 1}),  # the {email} slot draws from these two
    "emoji": Field(POOLS, required={mood: 1 for mood in (*EMOJI_MOODS, "none")}, closed=True),
}
"""The schema of ``models/phrases/shared.json``, the language-independent vocabularies and emoji."""

_FORMAT_SAMPLES: dict[str, object] = {"value": "12.99", "day": 7, "month": 3, "month_name": "March"}


@dataclass(frozen=True)
class LanguagePhrases:
    """One language's phrase pools, from ``<language>.json`` resolved against ``shared.json``.

    ``vocab`` holds the shared vocabularies overlaid with the language's own; ``emoji`` is the shared table.
    The other fields are the keys of :data:`LANGUAGE_SCHEMA`, as tuples and mappings.
    """

    language: str
    cues: Mapping[str, tuple[str, ...]]
    fillers: tuple[str, ...]
    greetings: tuple[str, ...]
    signoffs: tuple[str, ...]
    names: tuple[str, ...]
    sent_from: tuple[str, ...]
    connectors: tuple[str, ...]
    vocab: Mapping[str, tuple[str, ...]]
    months: tuple[str, ...]
    date_formats: tuple[str, ...]
    decimal_separator: str
    money_formats: tuple[str, ...]
    code_switch: Mapping[str, str]
    accent_folds: Mapping[str, str]
    keep_case: tuple[str, ...]
    emoji: Mapping[str, tuple[str, ...]]
    families: Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]]
    """label -> its scenario families in file order, each (name, realisations)."""
    distractors: tuple[str, ...]
    context: tuple[str, ...]


def _json_type(value: object) -> str:
    """A JSON value's type as a person editing the file would name it."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    names = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


class _PhraseFile:
    """One phrase file being checked: every error names the file and the key."""

    def __init__(self, source: str, schema: Mapping[str, Field]) -> None:
        self.source = source
        self.schema = schema

    def fail(self, key: str, message: str) -> NoReturn:
        raise DataError(f"{self.source}: {key}: {message}")

    def read(self, file: Traversable | Path) -> dict[str, Any]:
        """Parse the file and check its keys and the type, size and content of each (slots are checked later)."""
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(
                f"{self.source}: file not found; the generator needs shared.json and a <language>.json "
                f"and scenes_<language>.json for each of {', '.join(LANGUAGE_WEIGHTS)}"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.source}: not valid UTF-8 JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DataError(
                f"{self.source}: expected an object with keys {', '.join(self.schema)}, found {_json_type(data)}"
            )
        missing = [key for key in self.schema if key not in data]
        extra = sorted(set(data) - set(self.schema))
        if missing or extra:
            problems = [f"missing: {', '.join(missing)}"] if missing else []
            problems += [f"unexpected: {', '.join(extra)}"] if extra else []
            raise DataError(f"{self.source}: expected keys {', '.join(self.schema)}; {'; '.join(problems)}")
        for key, field in self.schema.items():
            self._check(key, field, data[key])
        return data

    def _check(self, key: str, field: Field, value: object) -> None:
        if field.kind == TEXT:
            if not isinstance(value, str) or not value:
                self.fail(key, f"expected a non-empty string, found {_json_type(value)} {value!r}")
            return
        if field.kind == STRINGS:
            self._check_strings(key, field, value)
            return
        if not isinstance(value, dict):
            self.fail(key, f"expected {field.kind}, found {_json_type(value)}")
        if field.kind == MAPPING:
            self._check_size(key, field.min_items, field.max_items, len(value))
            for native, replacement in value.items():
                if not native.strip() or not isinstance(replacement, str):
                    self.fail(
                        f"{key}.{native}",
                        f"expected a non-empty name mapped to a string, found {native!r}: {_json_type(replacement)}",
                    )
            return
        if field.kind == FAMILIES:
            self._check_families(key, field, value)
            return
        missing = [name for name in field.required if name not in value]
        if missing:
            self.fail(key, f"expected a pool for each of {', '.join(field.required)}; missing: {', '.join(missing)}")
        extra = sorted(set(value) - set(field.required))
        if field.closed and extra:
            self.fail(key, f"expected only the pools {', '.join(field.required)}; unexpected: {', '.join(extra)}")
        for name, pool in value.items():
            self._check_strings(
                f"{key}.{name}", replace(field, min_items=field.required.get(name, field.min_items)), pool
            )

    def _check_families(self, key: str, field: Field, value: dict[str, Any]) -> None:
        labels = ", ".join(field.required)
        missing = [name for name in field.required if name not in value]
        if missing:
            self.fail(key, f"expected families for each of {labels}; missing: {', '.join(missing)}")
        if extra := sorted(set(value) - set(field.required)):
            self.fail(key, f"expected only the labels {labels}; unexpected: {', '.join(extra)}")
        seen: dict[str, str] = {}
        for label, families in value.items():
            if not isinstance(families, dict):
                self.fail(f"{key}.{label}", f"expected an object of scenario families, found {_json_type(families)}")
            self._check_size(f"{key}.{label}", field.required[label], None, len(families))
            for name, pool in families.items():
                where = f"{key}.{label}.{name}"
                if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                    self.fail(where, f"expected a snake_case family name, found {name!r}")
                self._check_strings(where, replace(field, kind=STRINGS), pool)
                for text in pool:
                    if text in seen:
                        self.fail(where, f"expected distinct realisations, found {text!r} also in {seen[text]}")
                    seen[text] = where

    def _check_size(self, key: str, low: int, high: int | None, found: int) -> None:
        if found < low or (high is not None and found > high):
            bound = f"at least {low}" if high is None else f"exactly {low}" if high == low else f"{low} to {high}"
            self.fail(key, f"expected {bound} entries, found {found}")

    def _check_strings(self, key: str, field: Field, value: object) -> None:
        if not isinstance(value, list):
            self.fail(key, f"expected {STRINGS}, found {_json_type(value)}")
        self._check_size(key, field.min_items, field.max_items, len(value))
        for i, text in enumerate(value):
            where = f"{key}[{i}]"
            if not isinstance(text, str) or not text.strip():
                self.fail(where, f"expected a non-empty string, found {_json_type(text)} {text!r}")
            if field.format_fields:
                self._check_format(where, field, text)
            elif not field.slots and (slot := _SLOT.search(text)):
                self.fail(
                    where,
                    f"expected plain text (only cues and fillers have slots filled in), found the "
                    f"slot {slot.group(0)} in {text!r}",
                )
        if field.unique and (dupes := sorted(t for t, count in Counter(value).items() if count > 1)):
            self.fail(key, f"expected distinct templates, found {', '.join(map(repr, dupes))} more than once")

    def _check_format(self, key: str, field: Field, pattern: str) -> None:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
        except ValueError as exc:
            self.fail(key, f"expected a str.format pattern, found {pattern!r} ({exc})")
        unknown = sorted(names - set(field.format_fields))
        if unknown:
            self.fail(
                key,
                f"expected fields from {', '.join(f'{{{n}}}' for n in field.format_fields)}; found "
                f"{', '.join(f'{{{n}}}' for n in unknown)} in {pattern!r}",
            )
        if field.format_needs not in names:
            self.fail(key, f"expected a pattern that uses {{{field.format_needs}}}, found {pattern!r}")
        try:
            pattern.format(**_FORMAT_SAMPLES)
        except (ValueError, IndexError, KeyError) as exc:
            self.fail(key, f"expected a str.format pattern, found {pattern!r} ({exc})")

    def check_slots(self, keys: tuple[str, ...], data: Mapping[str, Any], known: set[str]) -> None:
        """Every ``{slot}`` in the templates under ``keys`` must be a generated slot or a vocabulary."""
        for key in keys:
            pools = data[key].items() if isinstance(data[key], dict) else [(None, data[key])]
            if self.schema[key].kind == FAMILIES:
                pools = [(f"{label}.{name}", t) for label, fam in data[key].items() for name, t in fam.items()]
            for name, templates in pools:
                path = key if name is None else f"{key}.{name}"
                for i, template in enumerate(templates):
                    for slot in _SLOT.findall(template):
                        if slot not in known:
                            self.fail(
                                f"{path}[{i}]",
                                f"expected slots from {', '.join(sorted(known))}; found "
                                f"unknown slot {{{slot}}} in {template!r}",
                            )

    def check_vocab_names(self, vocab: Mapping[str, object]) -> None:
        for name in vocab:
            if name in SLOT_FUNCS:
                self.fail(
                    f"vocab.{name}",
                    f"expected a name other than the generated slots ({', '.join(SLOT_FUNCS)}), found {name!r}",
                )


def load_phrases(root: Traversable | Path | None = None) -> dict[str, LanguagePhrases]:
    """Read and validate the phrase files in ``root`` (default: the bundled ``models/phrases`` folder).

    Reads ``shared.json`` against :data:`SHARED_SCHEMA`, and for each language of :data:`LANGUAGE_WEIGHTS` its
    ``<language>.json`` against :data:`LANGUAGE_SCHEMA` and ``scenes_<language>.json`` against
    :data:`SCENES_SCHEMA`. Raises :class:`DataError` naming the file, the key
    and what was expected and found.
    """
    folder = root if root is not None else resources.files(PHRASES_PACKAGE)
    shared_file = folder.joinpath(SHARED_FILE)
    checker = _PhraseFile(str(shared_file), SHARED_SCHEMA)
    shared = checker.read(shared_file)
    checker.check_vocab_names(shared["vocab"])
    book: dict[str, LanguagePhrases] = {}
    for lang in LANGUAGE_WEIGHTS:
        file = folder.joinpath(f"{lang}.json")
        checker = _PhraseFile(str(file), LANGUAGE_SCHEMA)
        data = checker.read(file)
        checker.check_vocab_names(data["vocab"])
        vocab = {name: tuple(pool) for name, pool in {**shared["vocab"], **data["vocab"]}.items()}
        checker.check_slots(
            tuple(key for key, field in LANGUAGE_SCHEMA.items() if field.slots), data, set(SLOT_FUNCS) | set(vocab)
        )
        scenes_file = folder.joinpath(SCENES_FILE.format(lang=lang))
        scenes_checker = _PhraseFile(str(scenes_file), SCENES_SCHEMA)
        scenes = scenes_checker.read(scenes_file)
        scenes_checker.check_slots(tuple(SCENES_SCHEMA), scenes, set(SLOT_FUNCS) | set(vocab))
        book[lang] = LanguagePhrases(
            language=lang,
            cues={label: tuple(data["cues"][label]) for label in LABELS},
            fillers=tuple(data["fillers"]),
            greetings=tuple(data["greetings"]),
            signoffs=tuple(data["signoffs"]),
            names=tuple(data["names"]),
            sent_from=tuple(data["sent_from"]),
            connectors=tuple(data["connectors"]),
            vocab=vocab,
            months=tuple(data["months"]),
            date_formats=tuple(data["date_formats"]),
            decimal_separator=data["decimal_separator"],
            money_formats=tuple(data["money_formats"]),
            code_switch=dict(data["code_switch"]),
            accent_folds=dict(data["accent_folds"]),
            keep_case=tuple(data["keep_case"]),
            emoji={mood: tuple(pool) for mood, pool in shared["emoji"].items()},
            families={
                label: tuple((name, tuple(pool)) for name, pool in scenes["families"][label].items())
                for label in LABELS
            },
            distractors=tuple(scenes["distractors"]),
            context=tuple(scenes["context"]),
        )
    return book


@functools.cache
def phrase_book() -> Mapping[str, LanguagePhrases]:
    """The bundled phrase files by language: read and validated on first use (never at import), then kept."""
    return MappingProxyType(load_phrases())


# ---------------------------------------------------------------------------------------------------------------
# Slots: generated values (money, dates, codes) and vocabularies.
# ---------------------------------------------------------------------------------------------------------------

AMOUNTS = (25.98, 8.99, 59.90, 129.00, 19.99, 38.97, 6.50, 99.00, 149.90, 4.99, 24.99, 89.00)
PREMIUM_PRICE = 12.99


def _money(value: float, phrases: LanguagePhrases, rng: random.Random) -> str:
    amount = f"{value:.2f}".replace(".", phrases.decimal_separator)
    return rng.choice(phrases.money_formats).format(value=amount)


def _date(phrases: LanguagePhrases, rng: random.Random) -> str:
    day, month = rng.randint(1, 28), rng.randint(1, 12)
    return rng.choice(phrases.date_formats).format(day=day, month=month, month_name=phrases.months[month - 1])


def _error_code(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return f"E-{rng.randint(1000, 9999)}"
    if kind == 1:
        return f"ERR_PLAYBACK_{rng.choice((500, 502, 503, 504))}"
    if kind == 2:
        return f"0x8007{rng.randint(0, 0xFFFF):04X}"
    if kind == 3:
        return f"DRM-{rng.randint(10, 99)}"
    if kind == 4:
        return rng.choice(("NET_TIMEOUT", "AUTH_401", "CDN-404", "PLAYER_INIT_FAILED"))
    return f"PLY-{rng.randint(100, 999)}"


SLOT_FUNCS: dict[str, Callable[[random.Random, LanguagePhrases], str]] = {
    "amount": lambda rng, phrases: _money(rng.choice(AMOUNTS), phrases, rng),
    "premium_price": lambda rng, phrases: _money(PREMIUM_PRICE, phrases, rng),
    "date": lambda rng, phrases: _date(phrases, rng),
    "error": lambda rng, phrases: _error_code(rng),
    "invoice": lambda rng, phrases: rng.choice(("INV-{y}-{n}", "EC{n}{n}", "{y}/{n}")).format(
        y=rng.randint(2022, 2025), n=rng.randint(10000, 99999)
    ),
    "order": lambda rng, phrases: rng.choice(("#", "ORD-", "")) + str(rng.randint(100000, 999999)),
    "year": lambda rng, phrases: str(rng.randint(2018, 2024)),
    "n": lambda rng, phrases: str(rng.randint(2, 5)),
    "seats": lambda rng, phrases: str(rng.choice((12, 15, 20, 25, 30, 40, 45, 60, 80, 120, 200))),
    "email": lambda rng, phrases: f"{rng.choice(phrases.vocab['username'])}@{rng.choice(phrases.vocab['domain'])}",
}
"""Slots whose values are generated; every other ``{slot}`` names a vocabulary of the phrase files."""
_SLOT = re.compile(r"\{(\w+)\}")


def _fill(template: str, phrases: LanguagePhrases, rng: random.Random) -> str:
    """Fill every ``{slot}`` of a template, left to right, from the slot functions and vocabularies."""

    def one(match: re.Match[str]) -> str:
        slot = match.group(1)
        if slot in SLOT_FUNCS:
            return SLOT_FUNCS[slot](rng, phrases)
        return rng.choice(phrases.vocab[slot])

    return _SLOT.sub(one, template)


def _is_heldout(index: int) -> bool:
    return index % HELDOUT_EVERY == HELDOUT_EVERY - 1


def _pool(phrases: LanguagePhrases, label: str, heldout: bool) -> list[tuple[int, str]]:
    """The (index, template) pairs of one cue pool on one side of the seen / held-out split."""
    return [(i, t) for i, t in enumerate(phrases.cues[label]) if _is_heldout(i) == heldout]


def _families(phrases: LanguagePhrases, label: str, heldout: bool) -> list[tuple[str, tuple[str, ...]]]:
    """The scenario families of one label on one side of the seen / held-out split."""
    every = HELDOUT_FAMILY_EVERY
    return [fam for j, fam in enumerate(phrases.families[label]) if (j % every == every - 1) == heldout]


def _realise(label: str, phrases: LanguagePhrases, rng: random.Random, heldout: bool) -> tuple[str, str]:
    """One template for a label and its id: an explicit cue (``lang:label:i``) or a family's realisation
    (``lang:label:family:i``)."""
    if rng.random() < EXPLICIT_P:
        index, template = rng.choice(_pool(phrases, label, heldout))
        return template, f"{phrases.language}:{label}:{index}"
    name, pool = rng.choice(_families(phrases, label, heldout))
    index = rng.randrange(len(pool))
    return pool[index], f"{phrases.language}:{label}:{name}:{index}"


def _length(candidate: tuple[str, str]) -> int:
    return len(candidate[0])


def _template_ids(example: Example) -> list[str]:
    """The ``lang:label:index`` ids of the cue templates an example was built from (kept in memory only)."""
    return list(example.meta.get("templates", []))


# ---------------------------------------------------------------------------------------------------------------
# Label sampling: priors by primary topic, kept as data.
# ---------------------------------------------------------------------------------------------------------------

TOPIC_WEIGHTS = {
    "technical_issue": 0.33,
    "billing": 0.22,
    "account_access": 0.18,
    "content_request": 0.13,
    "feature_request": 0.07,
    "cancellation": 0.07,
}
SECOND_TOPIC_P = 0.18
SECOND_TOPIC = {
    "technical_issue": {"account_access": 0.5, "billing": 0.3, "content_request": 0.1, "feature_request": 0.1},
    "billing": {"cancellation": 0.55, "account_access": 0.25, "technical_issue": 0.2},
    "account_access": {"technical_issue": 0.5, "billing": 0.4, "cancellation": 0.1},
    "content_request": {"feature_request": 0.5, "technical_issue": 0.3, "cancellation": 0.2},
    "feature_request": {"content_request": 0.6, "technical_issue": 0.4},
    "cancellation": {"billing": 0.7, "technical_issue": 0.15, "account_access": 0.15},
}
# Per primary topic: P(urgent), P(low_priority), P(frustrated), P(confused), P(satisfied), P(aggressive).
TOPIC_PRIORS = {
    "technical_issue": (0.25, 0.15, 0.38, 0.20, 0.09, 0.04),
    "billing": (0.25, 0.12, 0.35, 0.25, 0.07, 0.09),
    "account_access": (0.30, 0.08, 0.35, 0.25, 0.09, 0.04),
    "content_request": (0.03, 0.45, 0.12, 0.12, 0.35, 0.01),
    "feature_request": (0.02, 0.60, 0.06, 0.08, 0.45, 0.00),
    "cancellation": (0.15, 0.10, 0.45, 0.20, 0.05, 0.10),
}
MONEY_TOPICS = frozenset({"billing", "cancellation"})
USER_TYPE_PRIORS = {True: (0.40, 0.12, 0.08), False: (0.26, 0.30, 0.08)}  # keyed by "a money topic is present"


def _sample_labels(rng: random.Random) -> set[str]:
    """Sample a consistent label set: 1-2 topics (none for praise), at most one urgency and user type, 0-2
    emotions."""
    if rng.random() < PRAISE_ONLY_P:
        praise = {"satisfied"}
        if rng.random() < 0.5:
            praise.add(rng.choice(USER_TYPES))
        return praise
    primary = rng.choices(list(TOPIC_WEIGHTS), weights=list(TOPIC_WEIGHTS.values()))[0]
    labels = {primary}
    if rng.random() < SECOND_TOPIC_P:
        options = SECOND_TOPIC[primary]
        labels.add(rng.choices(list(options), weights=list(options.values()))[0])
    p_urgent, p_low, p_frustrated, p_confused, p_satisfied, p_aggressive = TOPIC_PRIORS[primary]

    draw = rng.random()
    if draw < p_urgent:
        labels.add("urgent")
    elif draw < p_urgent + p_low:
        labels.add("low_priority")

    premium, free, enterprise = USER_TYPE_PRIORS[bool(labels & MONEY_TOPICS)]
    draw = rng.random()
    if draw < premium:
        labels.add("premium_user")
    elif draw < premium + free:
        labels.add("free_user")
    elif draw < premium + free + enterprise:
        labels.add("enterprise")

    if "low_priority" not in labels and rng.random() < p_aggressive:
        return labels | {"aggressive", "frustrated"}
    if "low_priority" in labels:
        p_frustrated *= 0.4
    emotions = ["frustrated"] if rng.random() < p_frustrated else []
    if rng.random() < p_confused:
        emotions.append("confused")
    if rng.random() < p_satisfied * (0.3 if "frustrated" in emotions else 1.0):
        emotions.append("satisfied")
    if len(emotions) > 2:
        emotions.remove(rng.choice(emotions))
    return labels | set(emotions)


# ---------------------------------------------------------------------------------------------------------------
# Assembly and noise.
# ---------------------------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r" ?[.!]+(?=\s|$)")


def _lower_first(text: str, keep_case: tuple[str, ...]) -> str:
    first = text.split(" ", 1)[0]
    if first in keep_case or any(c.isupper() for c in first[1:]):
        return text
    return text[:1].lower() + text[1:]


def _strip_accents(text: str, phrases: LanguagePhrases, rng: random.Random) -> str:
    if phrases.accent_folds and rng.random() < 0.5:  # e.g. German ä -> ae, as typed on a foreign keyboard
        for accented, plain in phrases.accent_folds.items():
            text = text.replace(accented, plain)
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def _code_switch(text: str, phrases: LanguagePhrases, rng: random.Random) -> str:
    for native, english in phrases.code_switch.items():
        if native in text and rng.random() < 0.6:
            text = re.sub(rf"\b{re.escape(native)}\b", english, text)
    return text


def _fragments(
    labels: set[str], phrases: LanguagePhrases, rng: random.Random, heldout: bool, short: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """One filled cue fragment per label: (topic fragments, other fragments, template ids). ``short``: the
    shorter of two drawn templates, for one-liners."""
    topics: list[str] = []
    others: list[str] = []
    ids: list[str] = []
    for label in LABELS:
        if label not in labels or (label == "frustrated" and "aggressive" in labels and rng.random() < 0.6):
            continue
        template, template_id = _realise(label, phrases, rng, heldout)
        if short:
            template, template_id = min((template, template_id), _realise(label, phrases, rng, heldout), key=_length)
        text = _fill(template, phrases, rng)
        if (label == "aggressive" and rng.random() < 0.35) or (label == "urgent" and rng.random() < 0.2):
            text = text.upper()
        ids.append(template_id)
        (topics if label in TOPICS else others).append(text)
    rng.shuffle(topics)
    rng.shuffle(others)
    return topics, others, ids


def _compose(labels: set[str], phrases: LanguagePhrases, rng: random.Random, heldout: bool) -> tuple[str, list[str]]:
    """Assemble a ticket text for a label set; return the text and its cue template ids."""
    style = rng.choices(("terse", "plain", "mail"), weights=(0.25, 0.45, 0.30))[0]
    topics, others, ids = _fragments(labels, phrases, rng, heldout, short=style == "terse")
    body = topics + others
    if rng.random() < 0.25:  # topic usually leads, but not always
        rng.shuffle(body)
    if rng.random() < (0.05 if style == "terse" else 0.35):  # a label's words without its meaning
        body.insert(rng.randint(0, len(body)), _fill(rng.choice(phrases.distractors), phrases, rng))
    if style != "terse":  # short cue phrasings mostly get a full stop inside longer messages
        body = [f"{part}." if part[-1].isalnum() and rng.random() < 0.6 else part for part in body]
    _decorate(body, labels, phrases, rng)
    if style == "terse":
        sep = rng.choice((" ", ". ", ", ", " - ", "\n"))
        text = sep.join(part.rstrip(".") if sep.strip() else part for part in body)
        if rng.random() < 0.5:
            text = text.lower()
    else:
        n_fillers = rng.choices((0, 1, 2), weights=(0.50, 0.32, 0.18))[0] + (style == "mail") * rng.randint(1, 4)
        for filler in rng.sample(phrases.fillers + phrases.context, n_fillers):
            body.insert(rng.randint(0, len(body)), _fill(filler, phrases, rng))
        for i in range(1, len(body)):
            if body[i][0].isalpha() and rng.random() < 0.12:
                connector = rng.choice(phrases.connectors)
                body[i] = connector + (
                    body[i] if connector.endswith(": ") else _lower_first(body[i], phrases.keep_case)
                )
        text = _layout(body, phrases, rng, style)
    return _add_noise(text, labels, phrases, rng, style), ids


def _decorate(body: list[str], labels: set[str], phrases: LanguagePhrases, rng: random.Random) -> None:
    """Attach shouted punctuation and emoji to body fragments (never after the signature)."""
    if labels & {"aggressive", "frustrated"} and rng.random() < 0.25:
        i = rng.randrange(len(body))
        body[i] = body[i].rstrip(".!?") + rng.choice(("!!", "!!!", "?!", "!!!!"))
    if rng.random() < 0.15:
        moods = [label for label in EMOJI_MOODS if label in labels]
        mood = moods[0] if moods else "none"
        emoji = rng.choice(phrases.emoji[mood]) * (1 if mood == "none" else rng.choice((1, 1, 2, 3)))
        i = rng.randrange(len(body)) if rng.random() < 0.4 else len(body) - 1
        body[i] = f"{body[i]} {emoji}"


def _layout(body: list[str], phrases: LanguagePhrases, rng: random.Random, style: str) -> str:
    greeting = rng.choice(phrases.greetings) if rng.random() < (0.85 if style == "mail" else 0.45) else ""
    signoff = rng.choice(phrases.signoffs) if rng.random() < (0.8 if style == "mail" else 0.3) else ""
    name = rng.choice(phrases.names) if signoff and rng.random() < 0.7 else ""
    if style == "mail":
        cut = rng.randint(1, len(body)) if len(body) > 2 else len(body)
        paragraphs = [" ".join(body[:cut]), " ".join(body[cut:])]
        parts = [greeting, "\n\n".join(p for p in paragraphs if p), "\n".join(s for s in (signoff, name) if s)]
        if rng.random() < 0.1:
            parts.append(rng.choice(phrases.sent_from))
        return "\n\n".join(p for p in parts if p)
    closing = f"{signoff} {name}".strip() if signoff else ""
    text = " ".join(body)
    if greeting:
        text = greeting + rng.choice((" ", "\n", "\n\n")) + text
    return text + rng.choice((" ", "\n")) + closing if closing else text


def _add_noise(text: str, labels: set[str], phrases: LanguagePhrases, rng: random.Random, style: str) -> str:
    lang = phrases.language
    if lang != "en" and rng.random() < 0.15:
        text = _code_switch(text, phrases, rng)
    if "aggressive" in labels and rng.random() < 0.12:
        text = text.upper()
    elif style != "terse" and rng.random() < 0.08:
        text = text.lower()
    if rng.random() < 0.10:
        text = _SENTENCE_END.sub("", text)
    if lang != "en" and rng.random() < 0.08:
        text = _strip_accents(text, phrases, rng)
    if rng.random() < 0.10:
        text = typos(text, rng)
    return text


# ---------------------------------------------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------------------------------------------


def _make_example(
    ex_id: str, rng: random.Random, heldout: bool, order: list[str], book: Mapping[str, LanguagePhrases]
) -> Example:
    lang = rng.choices(list(LANGUAGE_WEIGHTS), weights=list(LANGUAGE_WEIGHTS.values()))[0]
    labels = _sample_labels(rng)
    text, ids = _compose(labels, book[lang], rng, heldout)
    return Example(
        id=ex_id,
        text=text,
        labels=tuple(name for name in order if name in labels),
        language=lang,
        meta={"templates": ids},
    )


def _check_taxonomy(taxonomy: Taxonomy) -> None:
    missing = [label for label in LABELS if label not in taxonomy.names]
    if missing:
        raise DataError(
            f"taxonomy {taxonomy.name!r} lacks label(s) {', '.join(missing)}; the generator writes the eurochef "
            "labels, so use load_taxonomy('eurochef') or a taxonomy that contains them"
        )


def _generate(n: int, seed: int, taxonomy: Taxonomy, progress: bool) -> dict[str, list[Example]]:
    if n < MIN_TICKETS:
        raise DataError(f"n must be at least {MIN_TICKETS} tickets so every split is non-empty, found {n}")
    _check_taxonomy(taxonomy)
    book = phrase_book()
    n_train, n_val = round(0.70 * n), round(0.15 * n)
    n_heldout = round(0.15 * n)
    rng = random.Random(seed)
    seen: list[Example] = []
    heldout: list[Example] = []
    with tqdm(total=n + n_heldout, desc="generating tickets", unit="ticket", disable=not progress) as bar:
        for i in range(n):
            seen.append(_make_example(f"eurochef-{i:06d}", rng, False, taxonomy.names, book))
            bar.update()
        for i in range(n_heldout):
            heldout.append(_make_example(f"eurochef-h-{i:06d}", rng, True, taxonomy.names, book))
            bar.update()
    noise = random.Random(seed + 1)  # its own stream: the texts do not depend on it
    train = [_drop_a_label(ex, noise) if noise.random() < LABEL_NOISE_P else ex for ex in seen[:n_train]]
    return {
        "train": train,
        "validation": seen[n_train : n_train + n_val],
        "test": seen[n_train + n_val :],
        "test_heldout": heldout,
    }


def _drop_a_label(example: Example, rng: random.Random) -> Example:
    """The example without one of its labels: a little annotation noise that keeps the taxonomy's rules (never the
    only topic, nor ``frustrated`` under ``aggressive``)."""
    topics = [label for label in example.labels if label in TOPICS]
    droppable = [
        label
        for label in example.labels
        if not (label in TOPICS and len(topics) == 1) and not (label == "frustrated" and "aggressive" in example.labels)
    ]
    if len(example.labels) < 2 or not droppable:
        return example
    dropped = rng.choice(droppable)
    meta = {**example.meta, "noise": f"dropped {dropped}"}
    return replace(example, labels=tuple(label for label in example.labels if label != dropped), meta=meta)


def generate_splits(n: int, seed: int, taxonomy: Taxonomy | None = None) -> dict[str, list[Example]]:
    """Generate ``n`` tickets split 70/15/15 into train/validation/test, plus ``round(0.15*n)`` held-out tickets.

    train, validation and test use only the 'seen' scenario families and cue templates; ``test_heldout`` uses only
    the held-out ones. A few training tickets (:data:`LABEL_NOISE_P`) lose one label, marked in
    ``meta['noise']``.
    Each example's ``meta['templates']`` lists its cue template ids (``lang:label:index``); it is not written to
    disk by :func:`write_generated_dataset`. The same ``seed`` always gives the same tickets.
    """
    return _generate(n, seed, taxonomy or load_taxonomy("eurochef"), progress=False)


def write_generated_dataset(out: str | Path, n: int, seed: int, progress: bool = True) -> dict[str, int]:
    """Generate a dataset folder: the four split JSONL files, ``taxonomy.json`` and ``dataset.json``.

    ``dataset.json`` records the seed, size, generator version and per-split counts of examples, languages and
    labels. Returns the number of examples per split.
    """
    out = Path(out)
    taxonomy = load_taxonomy("eurochef")
    splits = _generate(n, seed, taxonomy, progress)
    out.mkdir(parents=True, exist_ok=True)
    for name, examples in splits.items():
        write_jsonl(out / f"{name}.jsonl", [replace(ex, meta={}) for ex in examples])
    counts = {name: len(examples) for name, examples in splits.items()}
    info = {
        "generator": "models.generate",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "taxonomy": taxonomy.name,
        "splits": counts,
        "languages": {
            name: dict(sorted(Counter(ex.language or "" for ex in examples).items()))
            for name, examples in splits.items()
        },
        "label_counts": {
            name: {label: sum(label in ex.labels for ex in examples) for label in taxonomy.names}
            for name, examples in splits.items()
        },
    }
    (out / "taxonomy.json").write_text(
        json.dumps(taxonomy.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out / "dataset.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("wrote %d generated tickets (seed %d) to %s: %s", sum(counts.values()), seed, out, counts)
    return counts
