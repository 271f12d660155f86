"""Intent classification: all-MiniLM-L6-v2 sentence embeddings and a logistic-regression head.

The encoder stays frozen (one shared instance per process, about 8 ms a sentence here); only the
head is trained, in well under a second for a hundred intents, so a menu change retrains at
start-up. Confidence is the head's class probability. An utterance is out of scope when the best
probability is below ``oos_threshold`` or when an ``out_of_scope`` class (trained from examples
of what the menu does not cover) wins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from intents.config import OUT_OF_SCOPE


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
    """Fit on (text, label) pairs; predict with a calibrated confidence."""

    def __init__(self, embedder, *, oos_threshold: float = 0.3, oos_labels: tuple[str, ...] =
                 (OUT_OF_SCOPE, "oos")) -> None:
        self.embedder = embedder
        self.oos_threshold = oos_threshold
        self.oos_labels = set(oos_labels)
        self.head: LogisticRegression | None = None
        self.labels: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embedder.encode(texts, batch_size=64, normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False))

    def fit(self, texts: list[str], labels: list[str]) -> IntentClassifier:
        if len(texts) != len(labels) or not texts:
            raise ValueError("fit needs as many labels as texts, and at least one")
        if len(set(labels)) < 2:
            raise ValueError("fit needs at least two labels")
        vectors = self.embed(texts)
        # Few shots of unit-length vectors: weak regularization (large C) separates them.
        self.head = LogisticRegression(C=20.0, max_iter=2000, class_weight="balanced")
        self.head.fit(vectors, labels)
        self.labels = list(self.head.classes_)
        return self

    def predict_many(self, texts: list[str]) -> list[Prediction]:
        started = time.perf_counter()
        return self.predict_vectors(self.embed(texts), started)

    def predict_vectors(self, vectors: np.ndarray, started: float | None = None
                        ) -> list[Prediction]:
        """Predict from embeddings already computed (the caller signals share them)."""
        if self.head is None:
            raise RuntimeError("the classifier is not trained: call fit() first")
        started = started or time.perf_counter()
        probabilities = self.head.predict_proba(vectors)
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
