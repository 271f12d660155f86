"""Intent classification: all-MiniLM-L6-v2 sentence embeddings, character n-grams of the words,
and a logistic-regression head over both.

The encoder stays frozen (one shared instance per process, about 8 ms a sentence here); only the
head is trained, in about a second for a few dozen intents, so a menu change retrains at start-up.
The embedding carries the meaning; the n-grams (TF-IDF of 2-5 characters within words) carry the
exact words that tell near neighbours apart ("turn on" / "turn off", "forecast" / "temperature")
and that a small encoder blurs. Measured in bench/results/intents.md with 1-10 examples an
intent: about 1 point of accuracy on 42 smart-home intents, 1-9 points on 3 close weather
intents, for about 1.5 ms an utterance (an utterance takes 11-13 ms in all).

Confidence is the head's class probability. An utterance is out of scope when the best
probability is below ``oos_threshold`` or when an ``out_of_scope`` class (trained from examples
of what the menu does not cover) wins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from intents.config import OUT_OF_SCOPE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    label: str  # OUT_OF_SCOPE when nothing fits
    confidence: float
    alternatives: list[tuple[str, float]]  # the likeliest labels, best first (OOS excluded)
    elapsed_ms: float

    @property
    def out_of_scope(self) -> bool:
        return self.label == OUT_OF_SCOPE


class IntentClassifier:
    """Fit on (text, label) pairs; predict with a calibrated confidence.

    ``lexical_weight`` scales the character n-grams beside the unit-length embedding: 0 leaves
    the embedding alone; 1 lets the words outweigh the meaning (worse on paraphrases); 0.5 was
    best on both public sets of the benchmark. ``C`` is the head's inverse regularization: few
    examples of unit-length vectors separate best with weak regularization (large C); 1 lost 4-5
    points at 10 examples an intent; 100 gained under a point, within the spread over seeds.
    """

    def __init__(self, embedder, *, oos_threshold: float = 0.3, oos_labels: tuple[str, ...] =
                 (OUT_OF_SCOPE, "oos"), lexical_weight: float = 0.5, C: float = 20.0) -> None:
        if lexical_weight < 0:
            raise ValueError(f"lexical_weight must be 0 or more, got {lexical_weight}")
        if C <= 0:
            raise ValueError(f"C must be positive, got {C}")
        self.embedder = embedder
        self.oos_threshold = oos_threshold
        self.oos_labels = set(oos_labels)
        self.lexical_weight = lexical_weight
        self.C = C
        self.head: LogisticRegression | None = None
        self.lexical: TfidfVectorizer | None = None
        self.labels: list[str] = []
        self._warned_no_texts = False
        self._encoded = False  # the encoder has run once in this process (for warm_up)

    def embed(self, texts: list[str]) -> np.ndarray:
        self._encoded = True
        return np.asarray(self.embedder.encode(texts, batch_size=64, normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False))

    def warm_up(self) -> None:
        """Run the encoder once if it never has: its first encoding is several times slower.
        A classifier fitted on texts is already warm, so per-call callers pay nothing."""
        if not self._encoded:
            self.embed(["warm up"])

    def fit(self, texts: list[str], labels: list[str]) -> IntentClassifier:
        if len(texts) != len(labels) or not texts:
            raise ValueError("fit needs as many labels as texts, and at least one")
        return self.fit_vectors(self.embed(texts), texts, labels)

    def fit_vectors(self, vectors: np.ndarray, texts: Sequence[str], labels: Sequence[str]
                    ) -> IntentClassifier:
        """:meth:`fit` from embeddings already computed (a benchmark reuses them)."""
        if not len(vectors) == len(texts) == len(labels) or not len(texts):
            raise ValueError("fit needs as many labels as texts, and at least one")
        if len(set(labels)) < 2:
            raise ValueError("fit needs at least two labels")
        self.lexical = None
        if self.lexical_weight > 0:
            self.lexical = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5),
                                           sublinear_tf=True, lowercase=True).fit(texts)
        self.head = LogisticRegression(C=self.C, max_iter=3000, class_weight="balanced")
        self.head.fit(self._features(vectors, texts), list(labels))
        self.labels = list(self.head.classes_)
        return self

    def _features(self, vectors: np.ndarray, texts: Sequence[str]):
        if self.lexical is None:
            return vectors
        words = self.lexical.transform(texts) * self.lexical_weight
        return hstack([csr_matrix(vectors), words], format="csr")

    def _probabilities(self, vectors: np.ndarray, texts: Sequence[str] | None) -> np.ndarray:
        """The head's predict_proba, without stacking a dense and a sparse matrix per call
        (that alone took 0.7 ms of a 10 ms prediction)."""
        dims = vectors.shape[1]
        scores = vectors @ self.head.coef_[:, :dims].T + self.head.intercept_
        if self.lexical is not None:
            if texts is None:
                # Without the words only the embedding speaks: about lexical_weight=0's accuracy.
                if not self._warned_no_texts:
                    log.warning("predict_vectors() without texts: the n-gram features are "
                                "left out; pass texts= for the full model")
                    self._warned_no_texts = True
            else:
                words = self.lexical.transform(texts) * self.lexical_weight
                scores = scores + words @ self.head.coef_[:, dims:].T
        if scores.shape[1] == 1:  # two classes: one logistic
            positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        scores = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict_many(self, texts: list[str]) -> list[Prediction]:
        started = time.perf_counter()
        return self.predict_vectors(self.embed(texts), started, texts=texts)

    def predict_vectors(self, vectors: np.ndarray, started: float | None = None,
                        texts: Sequence[str] | None = None) -> list[Prediction]:
        """Predict from embeddings already computed (the caller signals share them); ``texts``
        are the utterances they encode, for the n-gram features."""
        if self.head is None:
            raise RuntimeError("the classifier is not trained: call fit() first")
        if texts is not None and len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts for {len(vectors)} vectors")
        started = started or time.perf_counter()
        probabilities = self._probabilities(vectors, texts)
        per_item = (time.perf_counter() - started) * 1000 / max(1, len(vectors))
        return [self._decide(row, per_item) for row in probabilities]

    def predict(self, text: str) -> Prediction:
        return self.predict_many([text])[0]

    def _decide(self, row: np.ndarray, elapsed_ms: float) -> Prediction:
        order = np.argsort(row)[::-1]
        ranked = [(self.labels[i], float(row[i])) for i in order]
        in_scope = [(label, p) for label, p in ranked if label not in self.oos_labels]
        best_label, best_p = ranked[0]
        if best_label in self.oos_labels or in_scope[0][1] < self.oos_threshold:
            return Prediction(OUT_OF_SCOPE, best_p if best_label in self.oos_labels
                              else 1.0 - in_scope[0][1], in_scope[:3], elapsed_ms)
        return Prediction(best_label, best_p, in_scope[:3], elapsed_ms)
