"""The classic baseline the encoder is compared against: character n-gram TF-IDF + one-vs-rest logistic regression.

Character n-grams within word boundaries (``char_wb``, 2 to 5 characters) cope with typos, missing accents and
the four languages without a tokenizer; per-label decision thresholds are tuned on validation exactly as for the
encoder (:func:`models.scoring.tune_thresholds`), so the two are compared on equal terms.

scikit-learn is needed here but is not a dependency of the server; it is imported only when a baseline is fitted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from models.datasets import Example, label_matrix
from models.errors import DataError, ModelError
from models.scoring import Scores, score, tune_thresholds

logger = logging.getLogger(__name__)


def _sklearn() -> tuple[Any, Any, Any]:
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
    except ImportError as exc:
        raise ModelError(
            "the n-gram baseline needs scikit-learn, which is not installed; run `pip install scikit-learn`"
        ) from exc
    return TfidfVectorizer, LogisticRegression, OneVsRestClassifier


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run scikit-learn with one BLAS thread.

    liblinear makes many BLAS calls on small vectors; once torch is imported in the same process, OpenBLAS's
    threads made a fit 40 to 80 times slower on a busy 2-core machine (20 s instead of 0.3 s). One thread is
    also what ``n_jobs=1`` promises.
    """
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, found a single string; wrap it in a list")
    return list(texts)


class NgramBaseline:
    """Character n-gram TF-IDF + one-vs-rest logistic regression with per-label thresholds tuned on validation.

    After :meth:`fit`: ``labels`` is the label order of every output column, ``thresholds`` the tuned per-label
    thresholds and ``fit_seconds`` the wall time of the fit (vectorising, training and threshold tuning).
    A label with no positive (or no negative) example in train gets a constant probability of 0 (or 1).
    ``C`` is the inverse L2 regularisation strength of each logistic regression (scikit-learn's name).
    """

    def __init__(
        self,
        *,
        C: float = 10.0,
        max_features: int = 200_000,
        ngram_range: tuple[int, int] = (2, 5),
        min_df: int = 2,
        max_iter: int = 1000,
    ) -> None:
        checks: dict[str, tuple[object, bool]] = {
            "C": (C, C > 0),
            "max_features": (max_features, max_features >= 1),
            "ngram_range": (ngram_range, 1 <= ngram_range[0] <= ngram_range[1]),
            "min_df": (min_df, min_df >= 1),
            "max_iter": (max_iter, max_iter >= 1),
        }
        bad = [f"{name}={value!r}" for name, (value, ok) in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid baseline argument(s): {', '.join(bad)}; C, max_features, min_df and max_iter must be "
                "positive, and ngram_range a (low, high) pair with 1 <= low <= high"
            )
        self.C = C
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.max_iter = max_iter
        self.labels: list[str] = []
        self.thresholds: list[float] = []
        self.fit_seconds: float = 0.0
        self._vectorizer: Any = None
        self._model: Any = None
        self._trained: np.ndarray = np.zeros(0, dtype=np.intp)  # columns with a fitted classifier
        self._constant: np.ndarray = np.zeros(0)  # probability for every other column

    def fit(self, train: Sequence[Example], validation: Sequence[Example], labels: list[str]) -> NgramBaseline:
        """Fit the vectoriser and one classifier per label on ``train``; tune thresholds on ``validation``.

        Labels of an example that are not in ``labels`` are ignored (and counted in a warning).
        """
        TfidfVectorizer, LogisticRegression, OneVsRestClassifier = _sklearn()
        started = time.perf_counter()
        if not labels or len(set(labels)) != len(labels):
            raise DataError(f"labels must be a non-empty list of distinct names, found {labels!r}")
        if len(train) < self.min_df:
            raise DataError(
                f"train has {len(train)} example(s); the baseline needs at least min_df={self.min_df} "
                "(an n-gram is kept only if it occurs in min_df texts)"
            )
        if not validation:
            raise DataError("validation is empty; thresholds are tuned on it, so pass at least one example")
        known = set(labels)
        unknown = sorted({label for ex in (*train, *validation) for label in ex.labels if label not in known})
        if unknown:
            logger.warning("ignoring %d label(s) not in the label list: %s", len(unknown), ", ".join(unknown))

        y_train = label_matrix(train, labels)
        positives = y_train.sum(axis=0)
        trainable = (positives > 0) & (positives < len(train))
        constant = np.where(positives > 0, 1.0, 0.0)
        constant[trainable] = np.nan
        missing = [labels[i] for i in np.flatnonzero(positives == 0)]
        if missing:
            logger.warning("labels with no training examples (always predicted absent): %s", ", ".join(missing))

        vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=self.ngram_range,
            min_df=self.min_df,
            sublinear_tf=True,
            max_features=self.max_features,
            dtype=np.float32,
        )
        try:
            features = vectorizer.fit_transform([ex.text for ex in train])
        except ValueError as exc:  # e.g. "After pruning, no terms remain"
            raise DataError(f"cannot build n-gram features from {len(train)} training text(s): {exc}") from exc
        model = None
        if trainable.any():
            # liblinear: exact and fast for these small binary problems on sparse features
            model = OneVsRestClassifier(
                LogisticRegression(C=self.C, class_weight="balanced", max_iter=self.max_iter, solver="liblinear"),
                n_jobs=1,
            )
            with _one_blas_thread():
                model.fit(features, y_train[:, trainable].astype(np.int_))

        self.labels = list(labels)
        self._vectorizer, self._model = vectorizer, model
        self._trained, self._constant = np.flatnonzero(trainable), constant
        val_probs = self.predict_proba([ex.text for ex in validation])
        self.thresholds = tune_thresholds(label_matrix(validation, labels), val_probs)
        self.fit_seconds = time.perf_counter() - started
        logger.info(
            "n-gram baseline: %d train texts, %d features, %d/%d labels trained, fitted in %.2fs",
            len(train),
            features.shape[1],
            int(trainable.sum()),
            len(labels),
            self.fit_seconds,
        )
        return self

    def _check_fitted(self) -> None:
        if self._vectorizer is None:
            raise ModelError("NgramBaseline is not fitted; call fit(train, validation, labels) first")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)), columns in the order of ``labels``."""
        self._check_fitted()
        items = _texts(texts)
        probs = np.tile(self._constant, (len(items), 1))
        if self._model is not None and items:
            features = self._vectorizer.transform(items)
            # one column per fitted estimator; reading them directly also covers the single-label case, where
            # OneVsRestClassifier.predict_proba would return the two columns of a binary problem
            with _one_blas_thread():
                probs[:, self._trained] = np.column_stack(
                    [estimator.predict_proba(features)[:, 1] for estimator in self._model.estimators_]
                )
        return probs

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """0/1 predictions, shape (len(texts), len(labels)), using the thresholds tuned on validation."""
        probs = self.predict_proba(texts)
        return (probs >= np.asarray(self.thresholds)).astype(np.int_)

    def evaluate(self, examples: Sequence[Example]) -> Scores:
        """Scores of :meth:`predict` on labelled examples, comparable with the encoder's checkpoint metrics."""
        self._check_fitted()
        return score(label_matrix(examples, self.labels), self.predict([ex.text for ex in examples]), self.labels)
