"""Public intent data sets, rebuilt from PyPI packages as train/test CSVs for `ivr intents eval`.

    .venv/bin/python -m bench.intent_datasets home-assistant [--out out/intent_data] [--seed 0]
    .venv/bin/python -m bench.intent_datasets snips-weather  [--out out/intent_data]

The usual benchmarks (CLINC150, BANKING77, HWU64, SNIPS-2017) are fetched from a data hub by every
package that offers them, and no hub is reachable here; these two ship their text inside a package:

``home-assistant`` -- the English sentences of Home Assistant's voice intents (package
  ``home-assistant-intents``, Apache-2.0; 42 intents in the 2026.10.27 release). Each intent is a
  set of hand-written templates (``turn (on|off) [the] {name}``); we draw concrete sentences from
  them. The test set holds *templates* the classifier never saw (about 30% of each intent's,
  where an intent has two or more), so a test sentence is a new phrasing, not a re-filled one.
  The names of rooms and devices, which Home Assistant takes from the user's home, are filled in
  from a fixed list below.
``snips-weather`` -- three fine-grained weather intents of the Snips NLU benchmark (real
  crowd-sourced utterances: 251 train, 50 test), shipped as samples in the source distribution of
  ``snips-nlu-metrics`` (Apache-2.0), which this script downloads with pip.

Both write ``<out>/<name>/train.csv`` and ``test.csv`` with the columns ``text,label``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "out" / "intent_data"

# -- a sampler for Home Assistant's template language (hassil) --------------------------------
#
# ``(a|b)`` one of, ``[a|b]`` optional one of, ``(a;b)`` all in any order, ``<rule>`` an
# expansion rule, ``{list}`` / ``{list:slot}`` a slot list. The whole grammar fits in a small
# recursive-descent parser; we only need to draw sentences, not to match them.


@dataclass
class Text:
    text: str


@dataclass
class Seq:
    items: list


@dataclass
class Alt:
    options: list  # of Seq
    optional: bool = False
    permute: bool = False


@dataclass
class Ref:
    name: str
    kind: str  # "rule" or "list"


def parse_template(template: str) -> Seq:
    seq, end = _parse_seq(template, 0, closers="")
    if end != len(template):
        raise ValueError(f"unbalanced template at {end}: {template!r}")
    return seq


def _parse_seq(s: str, i: int, closers: str) -> tuple[Seq, int]:
    items: list = []
    buf = []
    while i < len(s) and s[i] not in closers:
        c = s[i]
        if c in "([":
            if buf:
                items.append(Text("".join(buf)))
                buf = []
            alt, i = _parse_group(s, i + 1, ")" if c == "(" else "]")
            alt.optional = c == "["
            items.append(alt)
        elif c in "<{":
            close = ">" if c == "<" else "}"
            j = s.index(close, i)
            if buf:
                items.append(Text("".join(buf)))
                buf = []
            items.append(Ref(s[i + 1:j], "rule" if c == "<" else "list"))
            i = j + 1
        else:
            buf.append(c)
            i += 1
    if buf:
        items.append(Text("".join(buf)))
    return Seq(items), i


def _parse_group(s: str, i: int, close: str) -> tuple[Alt, int]:
    options, permute = [], False
    while True:
        seq, i = _parse_seq(s, i, closers="|;" + close)
        options.append(seq)
        if i >= len(s):
            raise ValueError(f"unclosed group in {s!r}")
        if s[i] == close:
            return Alt(options, permute=permute), i + 1
        permute = permute or s[i] == ";"
        i += 1


# Stand-ins for what Home Assistant fills from the user's home, and for free-text slots.
FILLERS: dict[str, list[str]] = {
    "area": ["kitchen", "living room", "bedroom", "bathroom", "office", "garage", "hallway",
             "dining room", "kids room", "basement", "garden", "guest room"],
    "floor": ["first", "second", "ground", "upstairs", "downstairs", "top"],
    "name": ["ceiling light", "desk lamp", "front door", "coffee maker", "tv", "heater",
             "porch light", "garage door", "thermostat", "air purifier", "robot vacuum",
             "kitchen speaker", "christmas lights", "bedside lamp", "shopping"],
    "message": ["dinner is ready", "we are leaving in five minutes", "time for bed",
                "the taxi is here"],
    "search_query": ["abbey road", "taylor swift", "jazz classics", "the beatles",
                     "morning acoustic"],
    "zone": ["work", "school", "home", "the gym"],
    "timer_name": ["pasta", "eggs", "laundry", "pizza"],
    "timer_command": ["turn off the oven", "open the blinds", "turn on the lights"],
    "shopping_list_item": ["milk", "eggs", "apples", "bread", "coffee", "dish soap"],
    "todo_list_item": ["call the plumber", "pay rent", "buy a gift", "water the plants"],
}


class Sampler:
    def __init__(self, data: dict, rng: random.Random) -> None:
        self.lists = data.get("lists", {})
        self.rules = {k: parse_template(v) for k, v in data.get("expansion_rules", {}).items()}
        self.rng = rng
        self._parsed: dict[str, Seq] = {}

    def sentence(self, template: str) -> str:
        tree = self._parsed.setdefault(template, parse_template(template))
        return re.sub(r"\s+", " ", self._draw(tree)).strip()

    def _draw(self, node) -> str:
        if isinstance(node, Text):
            return node.text
        if isinstance(node, Seq):
            return "".join(self._draw(item) for item in node.items)
        if isinstance(node, Alt):
            if node.permute:
                parts = [self._draw(o).strip() for o in node.options]
                self.rng.shuffle(parts)
                return " " + " ".join(parts) + " "
            if node.optional and self.rng.random() < 0.5:
                return ""
            return self._draw(self.rng.choice(node.options))
        if node.kind == "rule":
            return self._draw(self.rules[node.name])
        return self._draw_list(node.name.split(":", 1)[0])

    def _draw_list(self, name: str) -> str:
        spec = self.lists.get(name, {})
        if "values" in spec:
            value = self.rng.choice(spec["values"])
            text = value["in"] if isinstance(value, dict) else str(value)
            return self._draw(parse_template(text))
        if "range" in spec:
            r = spec["range"]
            return str(self.rng.randrange(r["from"], r["to"] + 1, r.get("step", 1)))
        if name in FILLERS:
            return self.rng.choice(FILLERS[name])
        raise KeyError(f"no values for list {{{name}}}")


MIN_TRAIN, MIN_TEST = 30, 10  # sentences per intent, where its templates allow as many


def home_assistant(seed: int = 0, per_template: int = 3, max_train: int = 150,
                   max_test: int = 40) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, test) rows; test sentences come from templates held out of training."""
    try:
        from home_assistant_intents import get_intents
    except ImportError:
        sys.exit("home-assistant needs the package: .venv/bin/pip install home-assistant-intents")
    data = get_intents("en")
    rng = random.Random(seed)
    sampler = Sampler(data, rng)
    train, test = [], []
    for intent in sorted(data["intents"]):
        templates = sorted({t for block in data["intents"][intent]["data"]
                            for t in block["sentences"]})
        rng.shuffle(templates)
        held = max(1, round(0.3 * len(templates))) if len(templates) >= 2 else 0
        test_t, train_t = templates[:held], templates[held:]
        # One template only: its sentences are split instead (noted in the report).
        test_t = test_t or train_t
        seen: set[str] = set()
        train += [(s, intent) for s in _draw_from(
            sampler, train_t, max(MIN_TRAIN, per_template * len(train_t)), max_train, seen)]
        test += [(s, intent) for s in _draw_from(
            sampler, test_t, max(MIN_TEST, per_template * len(test_t)), max_test, seen)]
    return train, test


def _draw_from(sampler: Sampler, templates: list[str], want: int, cap: int,
               seen: set[str]) -> list[str]:
    """Up to ``want`` new sentences (``cap`` at most), round-robin over the templates so that no
    single one fills the quota; none seen before."""
    out: list[str] = []
    want = min(want, cap)
    for _ in range(50):  # templates with few realizations run dry: stop trying
        for template in templates:
            if len(out) >= want:
                return out
            sentence = sampler.sentence(template)
            if sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return out


SNIPS_SDIST = "snips-nlu-metrics==0.15.0"


def snips_weather(cache: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    cache.mkdir(parents=True, exist_ok=True)
    archives = list(cache.glob("snips_nlu_metrics-0.15.0.tar.gz"))
    if not archives:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", SNIPS_SDIST, "-d", str(cache)], check=True)
        archives = list(cache.glob("snips_nlu_metrics-0.15.0.tar.gz"))
    rows = {}
    with tarfile.open(archives[0]) as tar:
        for split in ("train", "test"):
            member = tar.extractfile(f"snips_nlu_metrics-0.15.0/samples/{split}_dataset.json")
            data = json.load(member)
            rows[split] = [("".join(chunk["text"] for chunk in u["data"]).strip(),
                            intent.split("__", 1)[-1])
                           for intent, spec in sorted(data["intents"].items())
                           for u in spec["utterances"]]
    return rows["train"], rows["test"]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def build(name: str, out: Path = DEFAULT_OUT, seed: int = 0) -> Path:
    """Write ``out/name/{train,test}.csv``; returns the folder."""
    if name == "home-assistant":
        train, test = home_assistant(seed)
    elif name == "snips-weather":
        train, test = snips_weather(out / "cache")
    else:
        raise ValueError(f"unknown data set {name!r}: home-assistant or snips-weather")
    folder = out / name
    write_csv(folder / "train.csv", train)
    write_csv(folder / "test.csv", test)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=["home-assistant", "snips-weather"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0, help="which sentences are drawn")
    args = parser.parse_args(argv)
    folder = build(args.dataset, args.out, args.seed)
    for split in ("train", "test"):
        with open(folder / f"{split}.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        print(f"{folder / split}.csv: {len(rows)} rows, {len({r['label'] for r in rows})} labels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
