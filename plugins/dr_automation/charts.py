"""Plain SVG charts for the bundle's server-rendered pages: the status board and the drill report.

One home for both, so a drill's RTO/RPO read the same on the board during an incident and in the
report the stakeholders get. No scripts; every text is escaped; every value is written next to its
mark, so a chart reads without hovering (and in a printed or mailed copy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

OK, OVER, INK, MUTED, GRID = "#2e7d32", "#c62828", "#1f2933", "#7b8794", "#e4e7eb"
# one colour per recovery phase, in the order a recovery goes through them
PHASE_COLOURS = {
    "detect": "#8e44ad",
    "decide": "#2980b9",
    "switch": "#16a085",
    "restore": "#d68910",
    "verify": "#5d6d7e",
}


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def number(value: float, digits: int = 2) -> str:
    """A figure as the charts label it: rounded, without trailing zeros (0.1, 2.35, 60)."""
    return f"{round(float(value), digits):g}"


def objective_bars(
    rows: Sequence[tuple[str, float | None, float | None]],
    unit: str = "min",
    *,
    title: str | None = None,
    width: int = 460,
) -> str:
    """Measured value per row against its objective, each row on its own scale.

    The objective mark stands at the same place in every row, so a 6-second RTO against a 5-minute
    objective and a 3-minute RPO against a 60-minute one both read as "how close to the objective";
    one shared scale would draw every measured bar a pixel wide next to the largest objective. A bar
    past its objective is red and stops at the chart's edge with an arrow; its label says how far.
    """
    label_w, value_w, bar_h, gap = 140, 150, 14, 10
    plot = width - label_w - value_w
    mark = plot * 0.7  # where every row's objective stands
    top = 18 if title else 0
    height = top + len(rows) * (bar_h + gap) + gap
    aria = f' aria-label="{_e(title)}"' if title else ""
    out = [
        f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"{aria}>'
    ]
    if title:
        out.append(f'<text x="0" y="12" font-size="12" font-weight="bold">{_e(title)} ({_e(unit)})</text>')
    for i, (label, measured, objective) in enumerate(rows):
        y = top + gap + i * (bar_h + gap)
        text_y = y + bar_h - 3
        out.append(f'<text x="0" y="{text_y}" font-size="11">{_e(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{plot}" height="{bar_h}" fill="#f7f9fb"/>')
        scale = objective or measured or 1.0  # a row without an objective fills up to the mark
        over = measured is not None and objective is not None and measured > objective
        if measured is not None:
            w = min(plot, max(2.0, mark * measured / scale))
            out.append(
                f'<rect class="measured" x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                f'fill="{OVER if over else OK}" data-measured="{number(measured, 4)}" '
                f'data-objective="{"" if objective is None else number(objective, 4)}">'
                f"<title>{_e(label)}: {number(measured)} {_e(unit)}</title></rect>"
            )
            if over and mark * measured / scale > plot:
                tip = label_w + plot
                out.append(
                    f'<polygon points="{tip},{y} {tip + 7},{y + bar_h / 2} {tip},{y + bar_h}" fill="{OVER}"/>'
                )
        if objective is not None:
            x = label_w + mark
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y - 3}" y2="{y + bar_h + 3}" stroke="{INK}" '
                f'stroke-width="2"><title>objective {number(objective)} {_e(unit)}</title></line>'
            )
        vx = label_w + plot + 10
        value = "not measured" if measured is None else f"{number(measured)} {unit}"
        out.append(
            f'<text x="{vx}" y="{text_y}" font-size="11" font-weight="bold" '
            f'fill="{OVER if over else INK}">'
            f"{_e(value)}</text>"
        )
        if objective is not None:
            out.append(
                f'<text x="{vx + 7 * len(value) + 6}" y="{text_y}" font-size="10" fill="{MUTED}">'
                f"of {_e(number(objective))}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def stacked_phases(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    phases: Sequence[str] = tuple(PHASE_COLOURS),
    *,
    title: str = "Recovery time by phase",
    unit: str = "s",
    width: int = 560,
) -> str:
    """One bar per row split into its phases (shared scale: the rows' totals compare), with a legend."""
    label_w, value_w, bar_h, gap, legend_h = 140, 70, 14, 10, 22
    plot = width - label_w - value_w
    totals = [sum(v for v in p.values() if v) for _, p in rows]
    scale = max(totals or [0.0]) or 1.0
    height = 18 + legend_h + len(rows) * (bar_h + gap) + gap
    out = [
        f'<svg class="phases" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(title)}">',
        f'<text x="0" y="12" font-size="12" font-weight="bold">{_e(title)} ({_e(unit)})</text>',
    ]
    x = 0
    for phase in phases:
        out.append(
            f'<rect x="{x}" y="22" width="10" height="10" fill="{PHASE_COLOURS.get(phase, MUTED)}"/>'
            f'<text x="{x + 14}" y="31" font-size="11">{_e(phase)}</text>'
        )
        x += 22 + 7 * len(phase)
    for i, ((label, split), total) in enumerate(zip(rows, totals, strict=True)):
        y = 18 + legend_h + gap + i * (bar_h + gap)
        out.append(f'<text x="0" y="{y + bar_h - 3}" font-size="11">{_e(label)}</text>')
        at = float(label_w)
        for phase in phases:
            seconds = split.get(phase)
            if not seconds:
                continue
            w = plot * seconds / scale
            out.append(
                f'<rect class="phase" x="{at:.1f}" y="{y}" width="{max(w, 1.0):.1f}" height="{bar_h}" '
                f'fill="{PHASE_COLOURS.get(phase, MUTED)}" data-phase="{_e(phase)}" '
                f'data-seconds="{number(seconds, 3)}"><title>{_e(label)} {_e(phase)}: '
                f"{number(seconds)} {_e(unit)}</title></rect>"
            )
            at += w
        text = f"{number(total)} {unit}" if total else "not measured"
        out.append(f'<text x="{label_w + plot + 8}" y="{y + bar_h - 3}" font-size="11">{_e(text)}</text>')
    out.append("</svg>")
    return "".join(out)


def trend(
    points: Sequence[tuple[str, float]],
    *,
    threshold: float,
    threshold_label: str,
    title: str = "success rate across drills",
    width: int = 560,
) -> str:
    """Shares (0..1) over successive drills: a line with a labelled dot per drill (one drill is one
    dot) and the threshold dashed."""
    left, right, top, bottom = 40, 70, 24, 34
    height = 170
    plot_w, plot_h = width - left - right, height - top - bottom

    def y_of(share: float) -> float:
        return top + (1 - max(0.0, min(1.0, share))) * plot_h

    out = [
        f'<svg class="trend" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(title)}">'
    ]
    for share in (0.0, 0.5, 1.0):
        gy = y_of(share)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}" stroke="{GRID}"/>'
            f'<text x="0" y="{gy + 4:.1f}" font-size="10" fill="{MUTED}">{share * 100:.0f} %</text>'
        )
    ty = y_of(threshold)
    out.append(
        f'<line x1="{left}" x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e67e22" '
        f'stroke-dasharray="4"/><text x="{left + 4}" y="{ty + 12:.1f}" font-size="10" '
        f'fill="#e67e22">{_e(threshold_label)}</text>'
    )
    if not points:
        out.append(f'<text x="{left}" y="{top + plot_h / 2:.1f}" font-size="11">no drill yet</text></svg>')
        return "".join(out)
    step = plot_w / max(len(points) - 1, 1)
    xy = [
        (left + (i * step if len(points) > 1 else plot_w / 2), y_of(share))
        for i, (_, share) in enumerate(points)
    ]
    if len(xy) > 1:
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        out.append(f'<polyline points="{coords}" fill="none" stroke="#2c3e50" stroke-width="2"/>')
    for (label, share), (x, y) in zip(points, xy, strict=True):
        colour = OK if share >= threshold else OVER
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}" data-share="{number(share, 4)}">'
            f"<title>{_e(label)}: {share * 100:.0f} %</title></circle>"
            f'<text x="{x:.1f}" y="{y - 8:.1f}" font-size="10" text-anchor="middle">{share * 100:.0f} %</text>'
            f'<text x="{x:.1f}" y="{height - 8}" font-size="9" fill="{MUTED}" text-anchor="middle">'
            f"{_e(label[-22:])}</text>"
        )
    out.append("</svg>")
    return "".join(out)
