"""Tests for the training-time augmentation."""

from __future__ import annotations

import random

import pytest

from models.augment import TRANSFORMS, augment, recase, shuffle_sentences, strip_accents, typos, word_dropout

TEXT = "Bonjour, la vidéo s'arrête après deux minutes. J'ai essayé sur la télé. Rien ne marche depuis lundi!"


def test_probability_zero_leaves_text_alone_and_one_always_changes_something() -> None:
    rng = random.Random(0)
    assert all(augment(TEXT, rng, 0.0) == TEXT for _ in range(50))
    changed = sum(augment(TEXT, rng, 1.0) != TEXT for _ in range(200))
    assert changed >= 190  # a transform can be a no-op (e.g. shuffle back to the same order), rarely


def test_every_transform_keeps_some_text_and_is_reproducible() -> None:
    for name, transform in TRANSFORMS.items():
        a, b = transform(TEXT, random.Random(3)), transform(TEXT, random.Random(3))
        assert a == b, name
        assert a.strip(), name


def test_transforms_do_what_they_say() -> None:
    rng = random.Random(1)
    assert strip_accents("télé, Überraschung, ça", rng) == "tele, Uberraschung, ca"
    assert recase("Hello World", random.Random(0)) in {"hello world", "HELLO WORLD", "hello World"}
    shuffled = shuffle_sentences(TEXT, random.Random(2))
    assert sorted(shuffled.split()) == sorted(TEXT.split())
    assert len(typos("abcdefgh", random.Random(0))) in (7, 8, 9)
    assert word_dropout("one two three", rng, p=1.0) == "one two three"  # short texts are left alone
    assert word_dropout(" ".join(["w"] * 20), random.Random(0), p=1.0) == " ".join(["w"] * 20)  # never empty


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_training_args_reject_a_bad_augment_probability(p: float) -> None:
    from models.errors import DataError
    from models.train_encoder import EncoderTrainingArgs

    with pytest.raises(DataError, match=r"invalid training argument\(s\): augment="):
        EncoderTrainingArgs(augment=p)
