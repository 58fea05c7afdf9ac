"""Building blocks of the HTML report (`gristmill report`): tables, and bar charts as embedded PNGs,
so the page opens anywhere offline. Stages use them for their own sections."""

import base64
import html
from io import BytesIO


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


def bars(labels: list[str], values: list[float], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar([str(x) for x in labels], values, color="#4477aa")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=90)
    fig.tight_layout()
    return png(fig, title)
