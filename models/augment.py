"""Training-time text augmentation: the noise of real tickets, drawn fresh for every epoch.

Each transform keeps the labels true (it never removes a whole sentence, and the word dropout skips short
texts), so an augmented ticket is still a correct example. The mix makes the encoder rely on several cues at
once and survive typing styles the generator did not write: typos, case, lost accents, dropped words,
reordered sentences.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable

_WORD = re.compile(r"[^\W\d_]{4,}")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


def typos(text: str, rng: random.Random) -> str:
    """Swap, drop or double one letter in one to three words of four letters or more."""
    words = list(_WORD.finditer(text))
    if not words:
        return text
    chars = list(text)
    for match in sorted(rng.sample(words, min(len(words), rng.randint(1, 3))), key=lambda m: -m.start()):
        pos = rng.randrange(match.start() + 1, match.end() - 1)
        op = rng.randrange(3)
        if op == 0:
            chars[pos], chars[pos + 1] = chars[pos + 1], chars[pos]
        elif op == 1:
            del chars[pos]
        else:
            chars.insert(pos, chars[pos])
    return "".join(chars)


def word_dropout(text: str, rng: random.Random, p: float = 0.1) -> str:
    """Drop each word with probability ``p`` (texts of fewer than six words are left alone)."""
    words = text.split(" ")
    if len(words) < 6:
        return text
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept) if kept else text


def recase(text: str, rng: random.Random) -> str:
    """All lower case (most often), all upper case, or sentence starts lower-cased."""
    draw = rng.random()
    if draw < 0.6:
        return text.lower()
    if draw < 0.75:
        return text.upper()
    return re.sub(r"(^|[.!?]\s+)(\w)", lambda m: m.group(1) + m.group(2).lower(), text)


def strip_accents(text: str, rng: random.Random) -> str:
    """Drop diacritics, as typed on a keyboard without them."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def shuffle_sentences(text: str, rng: random.Random) -> str:
    """Reorder the sentences of a multi-sentence ticket."""
    parts = _SENTENCES.split(text.strip())
    if len(parts) < 3:
        return text
    rng.shuffle(parts)
    return " ".join(parts)


def strip_punctuation(text: str, rng: random.Random) -> str:
    """Drop sentence-final punctuation, as in chat-style messages."""
    return re.sub(r"[.!?]+(?=\s|$)", "", text)


TRANSFORMS: dict[str, Callable[[str, random.Random], str]] = {
    "typos": typos,
    "word_dropout": word_dropout,
    "recase": recase,
    "strip_accents": strip_accents,
    "shuffle_sentences": shuffle_sentences,
    "strip_punctuation": strip_punctuation,
}


def augment(text: str, rng: random.Random, p: float) -> str:
    """With probability ``p``, apply one to three distinct transforms of :data:`TRANSFORMS` in random order."""
    if p <= 0 or rng.random() >= p:
        return text
    for name in rng.sample(list(TRANSFORMS), rng.randint(1, 3)):
        text = TRANSFORMS[name](text, rng)
    return text
