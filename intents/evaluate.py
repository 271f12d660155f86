"""`ivr intents eval`: train on one labelled CSV, test on another, report accuracy and more.

The JSON keeps ``accuracy``, ``macro_f1``, ``in_scope_accuracy``, ``oos_recall`` and
``median_ms_per_utterance`` stable. Beside them: ``oos_precision`` (of what was rejected, how
much was really out of scope), ``oos_threshold`` and ``rejection`` (the rule, the threshold the
cross-validation chose and what it expected), and ``confusion_pairs`` (the pairs of labels most
often taken one for the other, counts both ways, out of scope included).
"""

from __future__ import annotations

import csv
import random
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from intents.classifier import IntentClassifier
from intents.config import OUT_OF_SCOPE

OOS_NAMES = {"oos", OUT_OF_SCOPE}


def read_labelled(path: Path | str) -> tuple[list[str], list[str]]:
    """A CSV with a header naming the columns ``text`` and ``label``."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"text", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs a header with columns text,label")
        rows = [(r["text"].strip(), r["label"].strip()) for r in reader if r["text"].strip()]
    if not rows:
        raise ValueError(f"{path}: no rows")
    return [t for t, _ in rows], [lab for _, lab in rows]


def take_shots(texts: list[str], labels: list[str], shots: int, seed: int
               ) -> tuple[list[str], list[str]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    for text, label in zip(texts, labels):
        by_label[label].append(text)
    rng = random.Random(seed)
    out_t, out_l = [], []
    for label in sorted(by_label):
        chosen = by_label[label][:]
        rng.shuffle(chosen)
        out_t += chosen[:shots]
        out_l += [label] * len(chosen[:shots])
    return out_t, out_l


def evaluate(train: Path | str, test: Path | str, *, embedder, shots: int | None = None,
             seed: int = 0, oos_threshold: float | str = "auto", augment: bool = False,
             rejection_score: str = "contrast") -> dict:
    train_texts, train_labels = read_labelled(train)
    if shots:
        train_texts, train_labels = take_shots(train_texts, train_labels, shots, seed)
    test_texts, test_labels = read_labelled(test)
    classifier = IntentClassifier(embedder, oos_threshold=oos_threshold, augment=augment,
                                  rejection_score=rejection_score).fit(train_texts, train_labels)
    timings = [classifier.predict(t).elapsed_ms for t in test_texts[:50]]  # one at a time
    predictions = classifier.predict_many(test_texts)
    predicted = [OUT_OF_SCOPE if p.out_of_scope else p.label for p in predictions]
    gold = [OUT_OF_SCOPE if label in OOS_NAMES else label for label in test_labels]
    return {"train_examples": len(train_texts), "test_examples": len(test_texts),
            "labels": len(set(train_labels)), **score(gold, predicted),
            "oos_threshold": round(classifier.rejection.threshold, 4),
            "rejection": classifier.rejection.as_dict(),
            "median_ms_per_utterance": round(statistics.median(timings), 2)}


def confusion_pairs(gold: list[str], predicted: list[str], top: int = 10) -> list[dict]:
    """The pairs of labels most often taken for one another (either way), worst first."""
    counts: Counter = Counter()
    ways: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for g, p in zip(gold, predicted):
        if g != p:
            pair = tuple(sorted((g, p)))
            counts[pair] += 1
            ways[pair][(g, p)] += 1
    return [{"labels": list(pair), "count": n,
             "as": {f"{g} -> {p}": k for (g, p), k in ways[pair].most_common()}}
            for pair, n in counts.most_common(top)]


def score(gold: list[str], predicted: list[str]) -> dict:
    """Accuracy, macro-F1 over the gold labels, recall per label and the confusion pairs; with
    out-of-scope utterances in ``gold``, also their recall and precision and the accuracy on
    the others (a rejected in-scope utterance counts as wrong)."""
    labels = sorted(set(gold) | set(predicted))
    recall, f1s = {}, []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, predicted))
        fn = sum(g == label != p for g, p in zip(gold, predicted))
        fp = sum(p == label != g for g, p in zip(gold, predicted))
        if label in gold:
            recall[label] = round(tp / (tp + fn), 4)
        precision = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        if label in gold:
            f1s.append(2 * precision * rec / (precision + rec) if precision + rec else 0.0)
    result = {
        "accuracy": round(sum(g == p for g, p in zip(gold, predicted)) / len(gold), 4),
        "macro_f1": round(statistics.fmean(f1s), 4),
        "per_label_recall": recall,
        "confusion_pairs": confusion_pairs(gold, predicted),
    }
    if OUT_OF_SCOPE in gold:
        result["oos_recall"] = recall[OUT_OF_SCOPE]
        rejected = sum(p == OUT_OF_SCOPE for p in predicted)
        caught = sum(g == p == OUT_OF_SCOPE for g, p in zip(gold, predicted))
        result["oos_precision"] = round(caught / rejected, 4) if rejected else 0.0
        in_scope = [(g, p) for g, p in zip(gold, predicted) if g != OUT_OF_SCOPE]
        result["in_scope_accuracy"] = round(sum(g == p for g, p in in_scope) / len(in_scope), 4)
    return result
