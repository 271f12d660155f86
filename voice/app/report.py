"""`ivr report --since 7d`: the contact-centre figures of a period as one HTML file with plots.

The file stands alone (plots are PNGs inside it, no script, no external asset), so it can be
mailed or archived. The figures come from the stored records (``voice.app.figures``).
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path

from voice.app.figures import Figures


def percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _num(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(f: Figures) -> dict[str, str]:
    """The report's plots as base64 PNGs, by name; a plot with nothing to show is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    if f.by_day:
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        days = [d["day"][5:] for d in f.by_day]
        bottom = [0] * len(days)
        for outcome, colour in (("contained", "#2563eb"), ("transferred", "#f59e0b"),
                                ("abandoned", "#dc2626"), ("failed", "#6b7280")):
            values = [d.get(outcome, 0) for d in f.by_day]
            ax.bar(days, values, bottom=bottom, label=outcome, color=colour)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("answered calls")
        ax.set_title("Outcomes by day")
        ax.legend(fontsize=8, ncols=4, loc="upper left")
        out["outcomes_by_day"] = _png(fig)
        plt.close(fig)
    for name, counts, title in (("queues", f.transfers_by_queue, "Transfers by queue"),
                                ("reasons", f.transfers_by_reason, "Transfers by reason")):
        if counts:
            fig, ax = plt.subplots(figsize=(7.5, 0.4 + 0.35 * len(counts)))
            labels = list(counts)[::-1]
            ax.barh(labels, [counts[k] for k in labels], color="#f59e0b")
            ax.set_xlabel("calls")
            ax.set_title(title)
            out[name] = _png(fig)
            plt.close(fig)
    if f.funnel:
        fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.45 * len(f.funnel)))
        intents = list(f.funnel)[::-1]
        height = 0.27
        for i, (step, colour) in enumerate((("recognized", "#93c5fd"), ("served", "#3b82f6"),
                                            ("contained", "#1e3a8a"))):
            ax.barh([k + (1 - i) * height for k in range(len(intents))],
                    [f.funnel[n][step] for n in intents], height=height, label=step,
                    color=colour)
        ax.set_yticks(range(len(intents)), intents)
        ax.set_xlabel("calls")
        ax.set_title("Per-intent funnel")
        ax.legend(fontsize=8, loc="lower right")
        out["funnel"] = _png(fig)
        plt.close(fig)
    if f.latency_ms:
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        stages = list(f.latency_ms)
        x = range(len(stages))
        ax.bar([i - 0.2 for i in x], [f.latency_ms[s].p50 or 0 for s in stages], width=0.4,
               label="p50", color="#2563eb")
        ax.bar([i + 0.2 for i in x], [f.latency_ms[s].p95 or 0 for s in stages], width=0.4,
               label="p95", color="#93c5fd")
        ax.set_xticks(list(x), stages, rotation=20, fontsize=8)
        ax.set_ylabel("ms")
        ax.set_title("Turn latency by stage")
        ax.legend(fontsize=8)
        out["latency"] = _png(fig)
        plt.close(fig)
    return out


def _table(headings: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows) or f"<tr><td colspan={len(headings)}>None.</td></tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(f: Figures) -> str:
    """The report as a complete HTML document."""
    period = " – ".join(datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")
                        for t in (f.since, f.until))
    images = plots(f)

    def img(name: str, alt: str) -> str:
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{images[name]}">' \
            if name in images else ""

    dispositions = sum(f.dispositions.values())
    tiles = [
        ("Answered calls", str(f.answered), f"{f.calls} calls in all"),
        ("Containment", percent(f.containment_rate), "served without a human"),
        ("Transfer rate", percent(f.transfer_rate), "handed to an agent"),
        ("Abandoned in the IVR", percent(f.abandon_ivr_rate), "left before being served"),
        ("Abandoned on hold", percent(f.abandon_hold_rate), "of transfers"),
        ("IVR handle time", f"{_num(f.handle_time_s.p50, 1)} s",
         f"median; p95 {_num(f.handle_time_s.p95, 1)} s"),
        ("Repeat calls within 7 days", percent(f.repeat_rate), f"{f.repeat_calls} calls"),
        ("Escalation accuracy", percent(f.escalation_accuracy),
         f"{dispositions} agent dispositions"),
    ]
    tile_html = "".join(f'<div class="tile"><div class="label">{html.escape(a)}</div>'
                        f'<div class="value">{html.escape(b)}</div>'
                        f'<div class="note">{html.escape(c)}</div></div>' for a, b, c in tiles)
    funnel = _table(["Intent", "Recognized", "Served", "Contained"],
                    [[k, str(v["recognized"]), str(v["served"]), str(v["contained"])]
                     for k, v in f.funnel.items()])
    latency = _table(["Stage", "Turns", "p50 ms", "p95 ms"],
                     [[k, str(v.count), _num(v.p50), _num(v.p95)]
                      for k, v in f.latency_ms.items()])
    transfers = _table(["Queue", "Calls"], [[k, str(v)] for k, v in f.transfers_by_queue.items()])
    reasons = _table(["Reason", "Calls"], [[k, str(v)] for k, v in f.transfers_by_reason.items()])
    outcomes = _table(["Transfer outcome", "Calls"],
                      [[k, str(v)] for k, v in f.transfer_outcomes.items()])
    versions = _table(["Flow version", "Contained", "Transferred", "Abandoned", "Failed"],
                      [[v, *(str(c.get(o, 0)) for o in ("contained", "transferred",
                                                         "abandoned", "failed"))]
                       for v, c in f.by_version.items()])
    verdicts = _table(["Disposition", "Transfers"],
                      [[k, str(v)] for k, v in f.dispositions.items()])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>IVR report {html.escape(period)}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; color: #111827; margin: 1.5rem auto;
  max-width: 1000px; padding: 0 1rem; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1.1rem; margin-top: 1.6rem; }}
.tiles {{ display: grid; grid-template-columns: repeat(4, 1fr); gap: .6rem; }}
.tile {{ border: 1px solid #d1d5db; border-radius: 8px; padding: .6rem .8rem; }}
.label, .note {{ color: #4b5563; font-size: .85rem; }} .value {{ font-size: 1.6rem;
  font-weight: 700; }}
table {{ border-collapse: collapse; margin: .4rem 0; }}
th, td {{ text-align: left; padding: .25rem .8rem .25rem 0; border-bottom: 1px solid #e5e7eb; }}
img {{ max-width: 100%; display: block; margin: .5rem 0; }}
.cols {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }}
</style></head><body>
<h1>IVR report</h1>
<p>{html.escape(period)} · from the stored call records and handoffs.
Rates are of answered calls; an intent is <em>recognized</em> when the flow routed on it,
<em>served</em> when the IVR answered it itself, <em>contained</em> when it was served in a call
that ended without a human.</p>
<div class="tiles">{tile_html}</div>
<h2>Outcomes</h2>{img("outcomes_by_day", "answered calls by outcome and day")}
<h2>Transfers</h2>{img("queues", "transfers by queue")}{img("reasons", "transfers by reason")}
<div class="cols"><div>{transfers}</div><div>{reasons}</div></div>{outcomes}
<h2>Per-intent funnel: recognized → served → contained</h2>{img("funnel", "funnel")}{funnel}
<h2>Latency by stage</h2>
<p>From the end of the caller's speech to the first reply sample handed to the transport,
per turn.</p>{img("latency", "latency by stage")}{latency}
<h2>Escalation accuracy (agents' dispositions)</h2>{verdicts}
<h2>By flow version</h2>{versions}
</body></html>
"""


def write(f: Figures, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(f), encoding="utf-8")
    return path
