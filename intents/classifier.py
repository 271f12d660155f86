"""Intent classification: all-MiniLM-L6-v2 sentence embeddings, character n-grams of the words,
and a logistic-regression head over both.

The encoder stays frozen (one shared instance per process, about 8 ms a sentence here); only the
head is trained, in about a second for a few dozen intents, so a menu change retrains at start-up.
The embedding carries the meaning; the n-grams (TF-IDF of 2-5 characters within words) carry the
exact words that tell near neighbours apart ("turn on" / "turn off", "forecast" / "temperature")
and that a small encoder blurs. Measured in bench/results/intents.md with 1-10 examples an
intent: about 1 point of accuracy on 42 smart-home intents, 1-9 points on 3 close weather
intents, for about 1.5 ms an utterance (an utterance takes 11-13 ms in all).

Confidence is the head's class probability. An utterance is out of scope when an
``out_of_scope`` class (trained from examples of what the menu does not cover) wins, or when its
rejection score is below a threshold. With ``oos_threshold="auto"`` (the default) that threshold
is not a fixed probability: the best probability of a 150-intent menu is spread over more
classes than a 10-intent one's, so one fixed cut rejects good answers in a large menu and lets
out-of-scope requests through in a small one. Instead the menu's own examples are
cross-validated at fit (each held out in turn, the head trained on the rest), and the threshold
on the rejection score is chosen from how the held-out examples -- and the held-out out-of-scope
examples where the menu has some, which estimate out-of-scope recall -- score
(:func:`choose_threshold`). A float keeps the old
rule: best probability below it is out of scope.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import get_args

import numpy as np
from scipy.sparse import csr_matrix, hstack
from scipy.special import logsumexp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from intents.augment import augment as spoken_rewrites
from intents.config import OUT_OF_SCOPE, RejectionScore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    label: str  # OUT_OF_SCOPE when nothing fits
    confidence: float
    alternatives: list[tuple[str, float]]  # the likeliest labels, best first (OOS excluded)
    elapsed_ms: float

    score: float | None = None  # the rejection score compared with the threshold

    @property
    def out_of_scope(self) -> bool:
        return self.label == OUT_OF_SCOPE


#: Rejection scores: higher means "more likely one of the menu's intents".
#: probability: the best in-scope class probability (the old rule; shrinks as classes multiply);
#: margin: best minus second probability; energy: log-sum-exp of the in-scope logits;
#: nearest: cosine to the closest training example of an in-scope intent;
#: blend: probability + nearest - 1 (0..1 + 0..1, minus one);
#: contrast: blend measured against the menu's out-of-scope examples: best in-scope probability
#: minus the out-of-scope class's, plus the cosine to the nearest in-scope example minus the
#: cosine to the nearest out-of-scope one (blend + 1 for a menu without such examples).
SCORES: tuple[str, ...] = get_args(RejectionScore)
#: From this many examples (not counting rewrites) the cross-validation uses 3 folds, not 5.
LARGE = 1000


@dataclass(frozen=True)
class Rejection:
    """How out of scope is decided: the score, its threshold, and how the threshold was chosen
    (fixed, or from the menu's cross-validation with the estimates it gave)."""
    score: str
    threshold: float
    source: str  # "fixed" or "cross-validation"
    folds: int = 0
    held_out: int = 0  # in-scope examples scored held out
    held_out_oos: int = 0  # out-of-scope examples scored held out
    estimated_in_scope_accuracy: float | None = None
    estimated_oos_recall: float | None = None

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in self.__dict__.items()}


@dataclass
class HeldOut:
    """Cross-validated predictions of a training set: each example predicted by a head that
    never saw it (nor its spoken rewrites)."""
    index: list[int] = field(default_factory=list)  # rows of the training data
    gold: list[str] = field(default_factory=list)
    predicted: list[str] = field(default_factory=list)  # best label, out-of-scope class included
    best_in_scope: list[str] = field(default_factory=list)
    probability: list[float] = field(default_factory=list)
    scores: list[dict[str, float]] = field(default_factory=list)  # every rejection score
    folds: int = 0

    def score(self, name: str) -> list[float]:
        return [row[name] for row in self.scores]


def fold_assignment(labels: Sequence[str], groups: Sequence[int], folds: int, seed: int = 0
                    ) -> np.ndarray:
    """A fold for every row, by group (an example and its rewrites go together), round-robin
    within each label after a seeded shuffle; -1 for labels with a single group (never held
    out: the head would have no example of them left)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for label, group in zip(labels, groups):
        members = by_label.setdefault(label, [])
        if group not in members:
            members.append(group)
    fold_of_group: dict[int, int] = {}
    offset = 0
    for label in sorted(by_label):
        members = by_label[label]
        if len(members) < 2:
            for g in members:
                fold_of_group[g] = -1
            continue
        order = rng.permutation(len(members))
        for position, i in enumerate(order):
            fold_of_group[members[i]] = (position + offset) % folds
        offset += len(members)  # spreads small labels over all folds
    return np.array([fold_of_group[g] for g in groups])


def choose_threshold(in_scores: np.ndarray, in_correct: np.ndarray, keep: float = 0.99
                     ) -> float:
    """The threshold on a rejection score from held-out scores: the score below which only
    ``1 - keep`` of the correctly classified held-out examples fall. Rejection then costs about
    that share of callers who would have been understood, however many intents share the
    probability; what it catches depends on how unlike the menu out-of-scope requests are.

    Measured on CLINC150's validation split (bench/results/intents_clinc150.md): choosing
    instead the threshold that maximized held-out in-scope accuracy plus out-of-scope recall
    swung with a handful of held-out out-of-scope examples (each worth 1/n of the objective),
    from rejecting 1 % to 7 % of good answers; the quantile is stable."""
    correct_scores = np.sort(np.asarray(in_scores)[np.asarray(in_correct, dtype=bool)])
    if len(correct_scores) == 0:
        return float("-inf")
    return float(np.quantile(correct_scores, 1.0 - keep))


class IntentClassifier:
    """Fit on (text, label) pairs; predict with a calibrated confidence.

    ``lexical_weight`` scales the character n-grams beside the unit-length embedding: 0 leaves
    the embedding alone; 1 lets the words outweigh the meaning (worse on paraphrases); 0.5 was
    best on both public sets of the benchmark. ``C`` is the head's inverse regularization: few
    examples of unit-length vectors separate best with weak regularization (large C); 1 lost 4-5
    points at 10 examples an intent; 100 gained under a point, within the spread over seeds.

    ``oos_threshold``: "auto" chooses the threshold on ``rejection_score`` by cross-validating
    the training data at fit (``folds``; by default 5, or 3 from ``LARGE`` examples on, where
    each fold costs most: the head's fit grows with examples times intents); a float is a
    fixed threshold on the best probability (0 never rejects). ``keep``: the share of correctly
    classified held-out examples the threshold keeps (:func:`choose_threshold`). ``augment``
    adds spoken-style rewrites of every example to the training data (:mod:`intents.augment`).
    """

    def __init__(self, embedder, *, oos_threshold: float | str = "auto",
                 oos_labels: tuple[str, ...] = (OUT_OF_SCOPE, "oos"),
                 lexical_weight: float = 0.5, C: float = 20.0, rejection_score: str = "contrast",
                 folds: int | None = None, augment: bool = False, keep: float = 0.99) -> None:
        if lexical_weight < 0:
            raise ValueError(f"lexical_weight must be 0 or more, got {lexical_weight}")
        if C <= 0:
            raise ValueError(f"C must be positive, got {C}")
        if oos_threshold != "auto" and not isinstance(oos_threshold, (int, float)):
            raise ValueError(f"oos_threshold must be 'auto' or a number, got {oos_threshold!r}")
        if rejection_score not in SCORES:
            raise ValueError(f"rejection_score must be one of {SCORES}, got {rejection_score!r}")
        if folds is not None and folds < 2:
            raise ValueError(f"folds must be 2 or more, got {folds}")
        self.embedder = embedder
        self.oos_threshold = oos_threshold
        self.oos_labels = set(oos_labels)
        self.lexical_weight = lexical_weight
        self.C = C
        self.rejection_score = rejection_score if oos_threshold == "auto" else "probability"
        self.folds = folds
        self.augment = augment
        self.keep = keep
        self.head: LogisticRegression | None = None
        self.lexical: TfidfVectorizer | None = None
        self.labels: list[str] = []
        self.rejection = Rejection("probability", float(oos_threshold)
                                   if oos_threshold != "auto" else 0.0, "fixed")
        self.held_out: HeldOut | None = None  # the cross-validation behind an "auto" threshold
        self._weights: tuple[np.ndarray, np.ndarray] | None = None  # the head, split, contiguous
        self._in_scope_vectors: np.ndarray | None = None  # for the "nearest" score
        self._oos_vectors: np.ndarray | None = None  # for the "contrast" score
        self._warned_no_texts = False
        self._encoded = False  # the encoder has run once in this process (for warm_up)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._encoded = True
        return np.asarray(self.embedder.encode(list(texts), batch_size=64,
                                               normalize_embeddings=True, convert_to_numpy=True,
                                               show_progress_bar=False))

    def warm_up(self) -> None:
        """Run the encoder once if it never has: its first encoding is several times slower.
        A classifier fitted on texts is already warm, so per-call callers pay nothing."""
        if not self._encoded:
            self.embed(["warm up"])

    def fit(self, texts: list[str], labels: list[str]) -> IntentClassifier:
        if len(texts) != len(labels) or not texts:
            raise ValueError("fit needs as many labels as texts, and at least one")
        groups = list(range(len(texts)))
        if self.augment:
            texts, labels, groups = self.rewrite(texts, labels)
        return self.fit_vectors(self.embed(texts), texts, labels, groups=groups)

    def rewrite(self, texts: Sequence[str], labels: Sequence[str]
                ) -> tuple[list[str], list[str], list[int]]:
        """The examples and their spoken-style rewrites, with the example each came from."""
        out_t, out_l, groups = list(texts), list(labels), list(range(len(texts)))
        for i, (text, label) in enumerate(zip(texts, labels)):
            if label in self.oos_labels:
                continue
            extra_t, _ = spoken_rewrites([text], [label], seed=i)
            out_t += extra_t[1:]
            out_l += [label] * (len(extra_t) - 1)
            groups += [i] * (len(extra_t) - 1)
        return out_t, out_l, groups

    def fit_vectors(self, vectors: np.ndarray, texts: Sequence[str], labels: Sequence[str],
                    groups: Sequence[int] | None = None) -> IntentClassifier:
        """:meth:`fit` from embeddings already computed (a benchmark reuses them). ``groups``
        names, for every row, the example it was rewritten from (rewrites are held out with
        their example in the cross-validation); by default each row is its own."""
        if not len(vectors) == len(texts) == len(labels) or not len(texts):
            raise ValueError("fit needs as many labels as texts, and at least one")
        if len(set(labels)) < 2:
            raise ValueError("fit needs at least two labels")
        groups = list(range(len(texts))) if groups is None else list(groups)
        if self.oos_threshold == "auto":
            self.held_out = self.cross_validate(vectors, texts, labels, groups)
            self.rejection = self._calibrated(self.held_out)
        self._train(vectors, texts, labels)
        return self

    def recalibrate(self, rejection_score: str, keep: float | None = None) -> Rejection:
        """Choose the threshold for another rejection score from the cross-validation already
        done at fit (a benchmark compares scores without refitting)."""
        if self.held_out is None:
            raise RuntimeError("recalibrate needs a classifier fitted with oos_threshold='auto'")
        if rejection_score not in SCORES:
            raise ValueError(f"rejection_score must be one of {SCORES}, got {rejection_score!r}")
        self.rejection_score = rejection_score
        self.keep = keep if keep is not None else self.keep
        self.rejection = self._calibrated(self.held_out)
        return self.rejection

    def _train(self, vectors: np.ndarray, texts: Sequence[str], labels: Sequence[str]) -> None:
        self.lexical = None
        if self.lexical_weight > 0:
            self.lexical = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5),
                                           sublinear_tf=True, lowercase=True).fit(texts)
        self.head = LogisticRegression(C=self.C, max_iter=3000, class_weight="balanced")
        self.head.fit(self._features(vectors, texts), list(labels))
        self._weights = None
        self.labels = list(self.head.classes_)
        in_scope = [i for i, label in enumerate(labels) if label not in self.oos_labels]
        self._in_scope_vectors = np.ascontiguousarray(vectors[in_scope], dtype=np.float32)
        out_of_scope = [i for i, label in enumerate(labels) if label in self.oos_labels]
        self._oos_vectors = np.ascontiguousarray(vectors[out_of_scope], dtype=np.float32)
        self._oos_index = np.array([i for i, label in enumerate(self.labels)
                                    if label in self.oos_labels], dtype=int)
        self._in_scope_index = np.array([i for i, label in enumerate(self.labels)
                                         if label not in self.oos_labels])

    def cross_validate(self, vectors: np.ndarray, texts: Sequence[str], labels: Sequence[str],
                       groups: Sequence[int] | None = None, seed: int = 0) -> HeldOut:
        """Every original example (not its rewrites) predicted by a head trained on the other
        folds, with its rejection score. Labels with a single example are never held out."""
        groups = list(range(len(texts))) if groups is None else list(groups)
        n_folds = self.folds or (5 if len(set(groups)) < LARGE else 3)
        fold = fold_assignment(labels, groups, n_folds, seed)
        folds = [f for f in range(n_folds) if (fold == f).any()]
        out = HeldOut(folds=len(folds))
        original = np.array([g == i for i, g in enumerate(groups)])
        for f in folds:
            train = np.flatnonzero(fold != f)
            test = np.flatnonzero((fold == f) & original)
            if len({labels[i] for i in train}) < 2 or not len(test):
                continue
            part = IntentClassifier(self.embedder, oos_threshold=0.0,
                                    oos_labels=tuple(self.oos_labels),
                                    lexical_weight=self.lexical_weight, C=self.C)
            part._train(vectors[train], [texts[i] for i in train], [labels[i] for i in train])
            probs, scores = part._scored(vectors[test], [texts[i] for i in test], "contrast")
            for row, p, sc in zip(test, probs, scores):
                best = str(part.labels[int(np.argmax(p))])
                inner = part._in_scope_index
                out.index.append(int(row))
                out.gold.append(labels[row])
                out.predicted.append(best)
                out.best_in_scope.append(str(part.labels[int(inner[np.argmax(p[inner])])])
                                         if len(inner) else best)
                out.probability.append(float(p.max()))
                out.scores.append(sc)
        return out

    def _calibrated(self, held: HeldOut) -> Rejection:
        gold = np.array(held.gold, dtype=object)
        scores = np.array(held.score(self.rejection_score))
        is_oos = np.array([g in self.oos_labels for g in held.gold], dtype=bool)
        predicted_oos = np.array([p in self.oos_labels for p in held.predicted], dtype=bool)
        correct = (np.array(held.predicted, dtype=object) == gold) & ~is_oos
        in_mask = ~is_oos
        # Examples the out-of-scope class takes are rejected whatever the threshold.
        usable = in_mask & ~predicted_oos
        threshold = choose_threshold(scores[usable], correct[usable], keep=self.keep) \
            if usable.any() else 0.0
        accepted = (scores >= threshold) & ~predicted_oos
        n_in, n_oos = int(in_mask.sum()), int(is_oos.sum())
        return Rejection(
            self.rejection_score, float(threshold), "cross-validation", held.folds, n_in, n_oos,
            float((correct & accepted)[in_mask].mean()) if n_in else None,
            float((~accepted)[is_oos].mean()) if n_oos else None)

    def _features(self, vectors: np.ndarray, texts: Sequence[str]):
        if self.lexical is None:
            return vectors
        words = self.lexical.transform(texts) * self.lexical_weight
        return hstack([csr_matrix(vectors), words], format="csr")

    def _logits(self, vectors: np.ndarray, texts: Sequence[str] | None) -> np.ndarray:
        """The head's decision function, without stacking a dense and a sparse matrix per call
        (that alone took 0.7 ms of a 10 ms prediction)."""
        dims = vectors.shape[1]
        if self._weights is None or self._weights[0].shape[0] != dims:
            # Contiguous copies, made once: slicing the head's coefficients on every call
            # copied them (151 intents x 20,000 n-grams: 25 ms an utterance).
            coef = self.head.coef_
            self._weights = (np.ascontiguousarray(coef[:, :dims].T),
                             np.ascontiguousarray(coef[:, dims:].T))
        scores = vectors @ self._weights[0] + self.head.intercept_
        if self.lexical is not None:
            if texts is None:
                # Without the words only the embedding speaks: about lexical_weight=0's accuracy.
                if not self._warned_no_texts:
                    log.warning("predict_vectors() without texts: the n-gram features are "
                                "left out; pass texts= for the full model")
                    self._warned_no_texts = True
            else:
                words = self.lexical.transform(texts) * self.lexical_weight
                scores = scores + words @ self._weights[1]
        if scores.shape[1] == 1:  # two classes: one logistic, as two logits
            scores = np.column_stack([-scores[:, 0] / 2, scores[:, 0] / 2])
        return scores

    def _scored(self, vectors: np.ndarray, texts: Sequence[str] | None, wanted: str
                ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Class probabilities and the rejection scores per row (the cosine to the nearest
        example only where ``wanted`` needs it)."""
        logits = self._logits(vectors, texts)
        probabilities = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
        inner = self._in_scope_index
        in_probs = np.sort(probabilities[:, inner], axis=1)
        best = in_probs[:, -1]
        margin = best - (in_probs[:, -2] if in_probs.shape[1] > 1 else 0.0)
        energy = logsumexp(logits[:, inner], axis=1)
        vectors = vectors.astype(np.float32, copy=False)
        nearest, nearest_oos = np.zeros(len(vectors)), np.zeros(len(vectors))
        if wanted in ("nearest", "blend", "contrast") and len(self._in_scope_vectors):
            nearest = (vectors @ self._in_scope_vectors.T).max(axis=1)
        if wanted == "contrast" and len(self._oos_vectors):
            nearest_oos = (vectors @ self._oos_vectors.T).max(axis=1)
        p_oos = probabilities[:, self._oos_index].sum(axis=1)
        scores = [{"probability": float(b), "margin": float(m), "energy": float(e),
                   "nearest": float(n), "blend": float(b + n - 1.0),
                   "contrast": float(b - po + n - no)}
                  for b, m, e, n, po, no in zip(best, margin, energy, nearest, p_oos,
                                                nearest_oos)]
        return probabilities, scores

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
        probabilities, scores = self._scored(vectors, texts, self.rejection.score)
        per_item = (time.perf_counter() - started) * 1000 / max(1, len(vectors))
        return [self._decide(row, score[self.rejection.score], per_item)
                for row, score in zip(probabilities, scores)]

    def predict(self, text: str) -> Prediction:
        return self.predict_many([text])[0]

    def _decide(self, row: np.ndarray, score: float, elapsed_ms: float) -> Prediction:
        order = np.argsort(row)[::-1]
        ranked = [(self.labels[i], float(row[i])) for i in order]
        in_scope = [(label, p) for label, p in ranked if label not in self.oos_labels]
        best_label, best_p = ranked[0]
        if best_label in self.oos_labels or score < self.rejection.threshold:
            return Prediction(OUT_OF_SCOPE, best_p if best_label in self.oos_labels
                              else 1.0 - in_scope[0][1], in_scope[:3], elapsed_ms, score)
        return Prediction(best_label, best_p, in_scope[:3], elapsed_ms, score)
