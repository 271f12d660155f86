"""`ivr intents check MENU`: what a menu author should know before the menu ships.

The menu's own examples are cross-validated with the classifier the IVR serves (each example
predicted by a head trained without it), which gives:

- an **estimate of accuracy** on callers' in-scope requests (a rejected one counts as wrong),
  and of **out-of-scope recall** where the menu has an ``out_of_scope`` intent with examples
  (without them there is nothing to estimate it from, and the check says so);
- the **rejection threshold** the classifier will use, chosen by the same cross-validation;
- the **examples it gets wrong**, with what they were taken for;
- **intents too close to separate**: pairs the cross-validation confuses (warned from two
  confusions on), and pairs with examples that say nearly the same thing (cosine of their
  embeddings at or above ``similar``), each with the closest two examples to rewrite;
- intents with **too few examples**, and examples written under two intents.

Estimates from a handful of examples are rough (each held-out example is 1/n of its intent);
a held-out test set of real callers' words is what ``ivr intents eval`` measures.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from intents.classifier import IntentClassifier
from intents.config import OUT_OF_SCOPE, MenuConfig

OOS_NAMES = {OUT_OF_SCOPE, "oos"}
#: Examples under this many per intent get a warning: cross-validation and the head both need
#: a few, and 5 is where the benchmark's few-shot accuracy stops climbing steeply.
MIN_EXAMPLES = 5


@dataclass
class CheckReport:
    version: str
    intents: int
    examples: int
    oos_examples: int
    estimated_accuracy: float | None
    estimated_oos_recall: float | None
    rejection: dict
    misclassified: list[dict] = field(default_factory=list)
    close_pairs: list[dict] = field(default_factory=list)
    thin_intents: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def check_menu(menu: MenuConfig, embedder, *, folds: int | None = None, similar: float = 0.9,
               classifier_options: dict | None = None) -> CheckReport:
    started = time.perf_counter()
    texts, labels = menu.training_data()
    options = {**menu.classifier_options(), **(classifier_options or {})}
    classifier = IntentClassifier(embedder, folds=folds, **options)
    groups = list(range(len(texts)))
    if classifier.augment:
        texts_all, labels_all, groups = classifier.rewrite(texts, labels)
    else:
        texts_all, labels_all = texts, labels
    vectors_all = classifier.embed(texts_all)
    # The cross-validation alone: the check needs no final head.
    held = classifier.cross_validate(vectors_all, texts_all, labels_all, groups)
    rejection = classifier._calibrated(held)
    vectors = vectors_all[: len(texts)]

    in_scope_names = [i.name for i in menu.intents if i.name not in OOS_NAMES]
    oos_count = sum(label in OOS_NAMES for label in labels)
    report = CheckReport(menu.version, len(in_scope_names), len(texts), oos_count,
                         rejection.estimated_in_scope_accuracy, rejection.estimated_oos_recall,
                         rejection.as_dict())

    # What the cross-validation gets wrong, rejection included.
    confused: Counter = Counter()
    for row, gold, best, closest, score in zip(held.index, held.gold, held.predicted,
                                               held.best_in_scope,
                                               held.score(rejection.score)):
        rejected = best in OOS_NAMES or score < rejection.threshold
        said = OUT_OF_SCOPE if rejected else best
        gold_name = OUT_OF_SCOPE if gold in OOS_NAMES else gold
        if said != gold_name:
            report.misclassified.append({"intent": gold_name, "example": texts[row],
                                         "taken_for": said,
                                         "closest_intent": closest})
            if said != OUT_OF_SCOPE and gold_name != OUT_OF_SCOPE:
                confused[tuple(sorted((gold_name, said)))] += 1

    # Pairs of intents whose examples say nearly the same thing, or that the CV confuses.
    label_arr = np.array(labels, dtype=object)
    sims = vectors @ vectors.T
    per_intent = Counter(labels)
    pairs: dict[tuple[str, str], dict] = {}
    names = [n for n in per_intent if n not in OOS_NAMES] + \
        [n for n in per_intent if n in OOS_NAMES]
    for i, a in enumerate(names):
        rows_a = np.flatnonzero(label_arr == a)
        for b in names[i + 1:]:
            rows_b = np.flatnonzero(label_arr == b)
            block = sims[np.ix_(rows_a, rows_b)]
            k = int(np.argmax(block))
            best = float(block.flat[k])
            key = tuple(sorted((a, b)))
            if best >= similar or confused[key]:
                ea, eb = texts[rows_a[k // block.shape[1]]], texts[rows_b[k % block.shape[1]]]
                pairs[key] = {"intents": list(key), "confused_in_cv": confused[key],
                              "closest_examples": [ea, eb] if key[0] == a else [eb, ea],
                              "cosine": round(best, 3)}
    report.close_pairs = sorted(pairs.values(), key=lambda p: (-p["confused_in_cv"],
                                                               -p["cosine"]))

    report.thin_intents = [{"intent": n, "examples": per_intent[n]} for n in in_scope_names
                           if per_intent[n] < MIN_EXAMPLES]
    seen: dict[str, str] = {}
    for text, label in zip(texts, labels):
        key = " ".join(text.lower().split())
        if key in seen and seen[key] != label:
            report.duplicates.append({"example": text, "intents": [seen[key], label]})
        seen.setdefault(key, label)

    for pair in report.close_pairs:
        if pair["confused_in_cv"] < 2 and pair["cosine"] < similar:
            continue  # one confusion alone is listed in close_pairs, not warned about
        a, b = pair["intents"]
        why = (f"confused {pair['confused_in_cv']} time(s) in cross-validation"
               if pair["confused_in_cv"] else f"examples at cosine {pair['cosine']:.2f}")
        report.warnings.append(f"{a} and {b} may be too close to separate ({why}): "
                               f"{pair['closest_examples'][0]!r} / "
                               f"{pair['closest_examples'][1]!r}")
    for thin in report.thin_intents:
        report.warnings.append(f"{thin['intent']} has {thin['examples']} example(s); "
                               f"{MIN_EXAMPLES} or more are advised")
    for dup in report.duplicates:
        report.warnings.append(f"{dup['example']!r} is an example of both "
                               f"{dup['intents'][0]} and {dup['intents'][1]}")
    if not oos_count:
        report.warnings.append(f"no {OUT_OF_SCOPE} examples: out-of-scope recall cannot be "
                               "estimated; add a few requests the menu does not serve")
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def format_report(report: CheckReport, limit: int = 20) -> str:
    r = report.rejection
    lines = [
        f"menu {report.version}: {report.intents} intents, {report.examples} examples "
        f"({report.oos_examples} out of scope)",
        f"estimated accuracy, in scope:  {_pct(report.estimated_accuracy)}  "
        f"({r['held_out']} examples held out over {r['folds']} folds; rejected counts as wrong)",
        f"estimated out-of-scope recall: {_pct(report.estimated_oos_recall)}"
        + (f"  ({r['held_out_oos']} out-of-scope examples held out)" if r["held_out_oos"]
           else ""),
        f"rejection: {r['score']} score below {r['threshold']:.3f} is out of scope "
        f"(chosen by {r['source']})",
        f"checked in {report.seconds:.1f} s",
    ]
    if report.misclassified:
        lines += ["", f"examples the cross-validation gets wrong ({len(report.misclassified)}):"]
        for m in report.misclassified[:limit]:
            extra = f" (closest: {m['closest_intent']})" if m["taken_for"] == OUT_OF_SCOPE else ""
            lines.append(f"  {m['intent']}: {m['example']!r} -> {m['taken_for']}{extra}")
        if len(report.misclassified) > limit:
            lines.append(f"  ... and {len(report.misclassified) - limit} more (--json has all)")
    if report.warnings:
        lines += ["", f"warnings ({len(report.warnings)}):"]
        lines += [f"  - {w}" for w in report.warnings[:limit]]
        if len(report.warnings) > limit:
            lines.append(f"  ... and {len(report.warnings) - limit} more (--json has all)")
    else:
        lines += ["", "no warnings"]
    return "\n".join(lines)


def run(menu_path, embedder, *, as_json: bool = False, folds: int | None = None,
        similar: float = 0.9,
        strict: bool = False) -> tuple[int, str]:
    """The exit status and the text ``ivr intents check`` prints."""
    from intents.config import load_menu

    menu = load_menu(menu_path)
    report = check_menu(menu, embedder, folds=folds, similar=similar)
    text = json.dumps(report.as_dict()) if as_json else format_report(report)
    return (1 if strict and report.warnings else 0), text
