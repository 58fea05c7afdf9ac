"""Building blocks of the HTML report (`gristmill report`): tables, bar charts as embedded PNGs (so the page
opens anywhere offline), escaped and truncated document text, and the few DuckDB look-ups the sections share.
Stages use them for their own sections.

Bounded by construction, so that a release of a million documents gives a page of a few MB: every chart is
an aggregate computed in DuckDB (GROUP BY, histogram bins of fixed width or of floor(log2(x))), never the
documents themselves; a chart has at most MAX_SERIES series (the largest sources; the rest are summed as
"other"); text from a document is at most EXAMPLE_CHARS characters and appears in at most 3 examples per
reject reason, per dedup cluster shown and 2 per mixture cluster shown. Everything that comes from a document
(text, url, id, detail) goes through html.escape(quote=True): nothing in it can run in the page.
"""

import base64
import html
from io import BytesIO

EXAMPLE_CHARS = 300  # characters of a document shown in an example
MAX_SERIES = 8  # sources (or stages, domains) drawn as separate series in one chart
COLORS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#000000", "#994455"]


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def clip(text: str | None, chars: int = EXAMPLE_CHARS) -> str:
    """`text`, at most `chars` characters (an ellipsis and the count left out when longer), escaped."""
    if text is None:
        return "<i>(no text)</i>"
    more = len(text) - chars
    shown = text[:chars] + (f" … [{more} more characters]" if more > 0 else "")
    return esc(shown)


def png(fig, title: str) -> str:
    import matplotlib.pyplot as plt

    buffer = BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    width, height = fig.canvas.get_width_height()
    plt.close(fig)
    return (f'<figure><img alt="{html.escape(title)}" width="{width}" height="{height}" '
            f'src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"></figure>')


def table(headers: list[str], rows: list[tuple], table_id: str) -> str:
    """A table with an id; numbers are right-aligned (class num)."""
    def td(v):
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        return f"<td class='num'>{v}</td>" if numeric else f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(td(v) for v in row) + "</tr>" for row in rows)
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display
    import matplotlib.pyplot as plt

    return plt


def bars(labels: list[str], values: list[float], title: str) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar([str(x) for x in labels], values, color="#4477aa")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=90)
    fig.tight_layout()
    return png(fig, title)


def grouped_bars(labels: list[str], series: dict[str, list[float]], title: str, xlabel: str = "",
                 ylabel: str = "", horizontal: bool = False) -> str:
    """One group of bars per label, one bar per series (at most MAX_SERIES of them: see `top_series`)."""
    plt = pyplot()
    n = max(1, len(series))
    width = 0.8 / n
    if horizontal:
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * max(1, len(labels)) * (1 + 0.5 * (n - 1))))
    else:
        fig, ax = plt.subplots(figsize=(8, 3.2))
    positions = list(range(len(labels)))
    for i, (name, values) in enumerate(series.items()):
        offsets = [p - 0.4 + width * (i + 0.5) for p in positions]
        if horizontal:
            ax.barh(offsets, values, height=width, label=str(name), color=COLORS[i % len(COLORS)])
        else:
            ax.bar(offsets, values, width=width, label=str(name), color=COLORS[i % len(COLORS)])
    if horizontal:
        ax.set_yticks(positions, [str(x) for x in labels])
        ax.invert_yaxis()  # the first label on top (the funnel reads downwards)
        ax.set_xlabel(ylabel)
    else:
        ax.set_xticks(positions, [str(x) for x in labels], rotation=90 if len(labels) > 8 else 0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return png(fig, title)


def top_series(rows: list[tuple], labels: list | None = None, limit: int = MAX_SERIES) -> tuple[list, dict]:
    """(labels, {series: values}) from (series, label, value) rows; labels in the given order, else in their
    first-seen order; the series beyond the `limit` largest (by total) are summed as "other", so a chart
    stays readable and small."""
    if labels is None:
        labels = list(dict.fromkeys(label for _, label, _ in rows))
    index = {label: i for i, label in enumerate(labels)}
    totals: dict[str, float] = {}
    for name, _, value in rows:
        totals[str(name)] = totals.get(str(name), 0) + (value or 0)
    keep = set(sorted(totals, key=lambda s: (-totals[s], s))[:limit])
    series: dict[str, list[float]] = {name: [0] * len(labels) for name in sorted(keep)}
    for name, label, value in rows:
        if label in index:
            key = str(name) if str(name) in keep else "other"
            series.setdefault(key, [0] * len(labels))[index[label]] += value or 0
    return labels, series


def log2_label(b) -> str:
    """The label of a floor(log2(x)) bin: its lower bound (1, 2, 4, ..., 1k, 1M)."""
    v = 2 ** int(b)
    for unit, size in (("M", 1 << 20), ("k", 1 << 10)):
        if v >= size:
            return f"{v // size}{unit}"
    return str(v)


def views(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def columns(con, view: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()}


def input_view(con, stage: str) -> str | None:
    """The documents view of the last stage before `stage` that wrote documents: what `stage` received."""
    from pipelines.stats import STAGE_ORDER

    present = views(con)
    before = STAGE_ORDER[:STAGE_ORDER.index(stage)] if stage in STAGE_ORDER else []
    for name in reversed(before):
        if f"docs_{name}" in present:
            return f"docs_{name}"
    return None


def docs(con, view: str | None, ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """{id: (url, text)} of the documents `ids` in `view` (a handful: DuckDB filters the row groups)."""
    if not view or not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    return {i: (u, t) for i, u, t in con.execute(
        f"SELECT id, any_value(url), any_value(text) FROM {view} WHERE id IN ({marks}) GROUP BY id",
        list(ids)).fetchall()}


def texts(con, view: str | None, ids: list[str]) -> dict[str, str]:
    """{id: text} of the documents `ids` in `view`."""
    return {i: t for i, (_, t) in docs(con, view, ids).items()}


def example(doc_id, url, text, detail=None, note: str = "") -> str:
    """One document shown in a list of examples: id, url, detail, the start of its text; all escaped."""
    extra = f" <span class='detail'>{esc(detail)}</span>" if detail not in (None, "") else ""
    return (f"<li class='example' data-id='{esc(doc_id)}'><code>{esc(doc_id)}</code> {esc(url)}{extra}{note}"
            f"<blockquote>{clip(text)}</blockquote></li>")
