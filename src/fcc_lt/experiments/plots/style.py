"""What every figure shares: paper style (8-9 pt text), a figure on its own Agg canvas (no pyplot, no global
backend switch), PNG + PDF written atomically, colours, the class rank order and shot-group boundaries."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcc_lt.util.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from fcc_lt.experiments.report import Group

PAPER_STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7,
               "xtick.labelsize": 8, "ytick.labelsize": 8, "lines.linewidth": 1.5, "axes.grid": True,
               "grid.alpha": 0.3, "pdf.fonttype": 42}
MIN_WIDTH, MAX_WIDTH = 6.0, 7.6  # inches: every figure fits a paper's text width (one or two columns)
LEGEND_ROW_IN = 0.15  # height of one row of a 7 pt legend
_CHAR_IN = 0.6 * 7 / 72  # the average width of a 7 pt character, in inches


def rank_order(train_counts: Sequence[int]) -> list[int]:
    """Class indices by training count, largest first, ties by index."""
    return sorted(range(len(train_counts)), key=lambda c: (-int(train_counts[c]), c))


def paper_style() -> AbstractContextManager[Any]:
    import matplotlib

    return matplotlib.rc_context(PAPER_STYLE)


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """``out_dir/stem.png`` (200 dpi) and ``stem.pdf`` (vector, fonts embedded as TrueType), atomically."""
    from fcc_lt.util.files import atomic_write_bytes

    # the PDF backend subsets fonts with fontTools, which logs every table at INFO (the CLI's level)
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file, expected a folder for the figures")
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    atomic_write_bytes(paths[0], lambda f: fig.savefig(f, format="png", dpi=200))
    atomic_write_bytes(paths[1], lambda f: fig.savefig(f, format="pdf", metadata={"CreationDate": None}))
    return paths


def colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def shot_bounds(ax: Axes, many_min: int, few_max: int) -> None:
    """Dotted lines between the shot groups on a training-count axis, with the groups named."""
    for x in (few_max + 0.5, many_min - 0.5):
        ax.axvline(x, color="0.5", linestyle=":", linewidth=0.8)
    trans = ax.get_xaxis_transform()
    lo, hi = ax.get_xlim()
    for text, x in (("few", math.sqrt(max(lo, 1e-9) * (few_max + 0.5))),
                    ("medium", math.sqrt((few_max + 0.5) * (many_min - 0.5))),
                    ("many", math.sqrt((many_min - 0.5) * max(hi, many_min)))):
        if lo < x < hi:
            ax.text(x, 0.99, text, transform=trans, ha="center", va="top", fontsize=7, color="0.4")


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    names = [Path(r).name for r in run_dirs]
    return [n if names.count(n) == 1 else str(r) for n, r in zip(names, run_dirs)]


def _fcc_place(group: Group) -> str:
    """'here' (FCC in the group's own stage), 'earlier' (only in the run it starts from: a second stage on an
    FCC backbone) or 'none'."""
    run = group.runs[0]
    return "here" if run.fcc_here else "earlier" if run.fcc_on else "none"


def group_styles(groups: Sequence[Group]) -> list[tuple[Any, str]]:
    """A colour per method (with and without FCC share it), solid with FCC in the run's own stage, dash-dot
    with FCC only in the stage it starts from, dashed without."""
    methods: dict[Any, int] = {}
    for g in groups:
        methods.setdefault(g.runs[0].method_key(), len(methods))
    palette = colors(len(methods))
    dash = {"here": "-", "earlier": "-.", "none": "--"}
    return [(palette[methods[g.runs[0].method_key()]], dash[_fcc_place(g)]) for g in groups]


def group_labels(groups: Sequence[Group]) -> list[str]:
    """Legend entries: the method and FCC, plus whatever else differs between the plotted groups."""
    from fcc_lt.experiments.report import COLUMNS

    columns = [g.standard_columns() for g in groups]
    varying = [c for c in COLUMNS if c not in ("method", "fcc") and len({col[c] for col in columns}) > 1]
    labels = []
    for g, col in zip(groups, columns):
        parts = [col["method"] + ("" if col["fcc"] == "-" else f" + {col['fcc']}")]
        parts += [f"{COLUMNS[c]} {col[c]}" for c in varying]
        if g.differs:
            parts.append(g.differs)
        short = " †short schedule" if g.marked else ""  # counted with --include-short: marked as in the tables
        labels.append(f"{', '.join(parts)} (n={len(g.runs)}){short}")
    return labels


def group_markers(groups: Sequence[Group], colours: Sequence[Any]) -> list[dict[str, Any]]:
    """Markers that tell with from without FCC apart at print size, where colour and dash alone may not: a
    filled circle with FCC in the run's own stage, a filled triangle with FCC only in the stage it starts
    from, a hollow square without."""
    marker = {"here": "o", "earlier": "^", "none": "s"}
    return [{"marker": marker[place], "markerfacecolor": "white" if place == "none" else c, "markeredgecolor": c}
            for place, c in zip((_fcc_place(g) for g in groups), colours)]


def legend_layout(labels: Sequence[str], width: float) -> tuple[list[str], int, int]:
    """Legend entries wrapped to fit a figure ``width`` inches wide, the number of columns that fit, and the
    number of legend rows (for the figure's height)."""
    import textwrap

    chars = max(20, int(width / _CHAR_IN) - 8)  # room for the handle and the frame
    ncols = max(1, min(len(labels), chars // (max((len(t) for t in labels), default=1) + 6)))
    wrapped = [textwrap.fill(t, max(20, chars // ncols - 6)) for t in labels]
    lines_per_entry = max((t.count("\n") + 1 for t in wrapped), default=1)
    rows = math.ceil(len(labels) / ncols) * lines_per_entry
    return wrapped, ncols, rows


def legend_below(fig: Figure, handles: Sequence[Any], labels: Sequence[str], width: float) -> None:
    """The figure's legend under its panels, outside every axes (it never covers data), entries wrapped and
    in as many columns as fit the width."""
    wrapped, ncols, _ = legend_layout(labels, width)
    fig.legend(handles, wrapped, loc="outside lower center", ncols=ncols, frameon=False)


def legend_height(labels: Sequence[str], width: float) -> float:
    """The height, in inches, a ``legend_below`` of these labels takes."""
    return LEGEND_ROW_IN * legend_layout(labels, width)[2] + 0.1
