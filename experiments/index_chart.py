#!/usr/bin/env python3
"""HTML page of `shopclip bench index` results: per pool size, recall@10 against single-query
latency for every FAISS index and search setting, with the table of that pool's figures.

Usage:
  experiments/index_chart.py --out PAGE.html FILE.json [FILE.json ...]

Each FILE.json is the output of `shopclip bench index` (as written by
experiments/bench_index.sh to experiments/results/index-<time>-*.json). Rows of all files are
grouped by pool size; the page holds one chart and one table per pool size, smallest first.

In each chart, x is the single-query p50 latency (ms, log10 scale) and y is recall@10 (the share
of exact search's top 10 that the index returns). Markers of one factory string share a colour
and shape and are joined in order of latency; each is labelled with its search parameters and
carries an SVG <title> tooltip with all its figures. A dashed line marks recall@10 = 0.95 and a
ring marks the fastest setting at or above it, as in bench_index_record.py's Markdown record.

The page is self-contained (inline CSS and SVG, no scripts, fonts or network resources) and is
made with the standard library only.
"""
import argparse
import html
import json
import math
import os
import re
import sys

RECALL_TARGET = 0.95
TITLE = "FAISS indexes on a demo run's embeddings: recall@10 against single-query latency"

# Okabe-Ito colours (minus yellow, too pale on white): distinguishable with common colour-vision
# deficiencies; the marker shapes below tell factories apart as well.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#8C564B"]
SHAPES = ["circle", "square", "triangle", "diamond", "triangle-down", "cross"]

# Chart geometry, in SVG user units (the SVG scales with the page width).
WIDTH, HEIGHT = 960, 440
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 70, 720, 28, 385
# Recall 1.0 is drawn this far below the frame's top edge, so that the many markers at 1.0 do not
# sit on the frame and labels have room above them.
HEADROOM = 12
LEGEND_X = PLOT_RIGHT + 28
FONT_PX = 11
# Width of one character of an 11 px sans-serif label, generous so that estimated boxes cover
# the wider fonts (DejaVu Sans) a browser may pick.
CHAR_PX = 6.6
MARKER_R = 5
RING_R = 10  # the ring around the fastest point at the target recall


# ---------------------------------------------------------------------------------------------
# Input


def load_results(paths):
    """Reads each bench JSON; returns [(path, result)] and all rows tagged with their file."""
    results, rows = [], []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
        results.append((path, result))
        for row in result.get("rows", []):
            # A log axis cannot place a zero or negative latency; such a row would be a bench
            # bug, so say so rather than plot it somewhere misleading.
            if not row.get("latency_ms_p50", 0) > 0 or "recall_at_10" not in row:
                print(f"index_chart: skipping row without a positive p50 or recall@10 in {path}: "
                      f"{row}", file=sys.stderr)
                continue
            rows.append(dict(row, source=os.path.basename(path)))
    return results, rows


def rows_by_pool(rows):
    """{pool size: rows in file order}, ascending by pool size."""
    pools = {}
    for row in rows:
        pools.setdefault(row["pool"], []).append(row)
    return dict(sorted(pools.items()))


def style_key(factory):
    """The part of a factory string that picks its colour and shape. The number of IVF lists is
    dropped because bench_index.sh scales it with the pool (IVF256 at 6k-30k rows, IVF1024 at
    1M): IVF1024,Flat then looks like IVF256,Flat, the same kind of index."""
    return re.sub(r"IVF\d+", "IVF", factory)


def factory_styles(rows):
    """Colour and shape per factory string, in order of first appearance over all files, so
    that a factory measured at several pool sizes looks the same in every chart."""
    by_key, styles = {}, {}
    for row in rows:
        key = style_key(row["index"])
        if key not in by_key:
            n = len(by_key)
            by_key[key] = (COLOURS[n % len(COLOURS)], SHAPES[n % len(SHAPES)])
        styles[row["index"]] = by_key[key]
    return styles


def fastest_at_target(rows):
    """The row with the lowest p50 among those with recall@10 >= the target, or None."""
    good = [r for r in rows if r["recall_at_10"] >= RECALL_TARGET]
    return min(good, key=lambda r: r["latency_ms_p50"]) if good else None


# ---------------------------------------------------------------------------------------------
# Formatting


def esc(value):
    return html.escape(str(value), quote=True)


def search_label(row):
    # Flat has no search parameter: it is exact search.
    return row["search_params"] or "exact"


def setting_name(row):
    return f"{row['index']} {search_label(row)}"


def tooltip(row):
    return "\n".join([
        setting_name(row),
        f"pool {row['pool']:,} rows",
        f"p50 {row['latency_ms_p50']:.3f} ms, p99 {row['latency_ms_p99']:.3f} ms (single query)",
        f"{row['queries_per_second']:,.0f} queries/s (batch)",
        f"recall@10 {row['recall_at_10']:.4f}",
        f"MeanRecall {row['mean_recall']:.2f} (exact search: {row['mean_recall_exact']:.2f})",
        f"build {row['build_seconds']:.2f} s, {row['size_mib']:.1f} MiB",
        f"from {row['source']}",
    ])


def tick_text(value):
    """Latency tick label: 0.05, 0.1, 2, 1,000 (no float noise such as 0.30000000000000004)."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.10g}"


# ---------------------------------------------------------------------------------------------
# Scales


class LogScale:
    """Maps latency (ms) to x on a log10 axis."""

    def __init__(self, values):
        lo, hi = math.log10(min(values)), math.log10(max(values))
        # One point (or equal latencies) has no span: give it +-0.3 decades so that it sits in
        # the middle and 2x/5x ticks exist on both sides.
        if hi - lo < 1e-9:
            lo, hi = lo - 0.3, hi + 0.3
        pad = max(0.06 * (hi - lo), 0.05)
        self.lo, self.hi = lo - pad, hi + pad

    def __call__(self, value):
        frac = (math.log10(value) - self.lo) / (self.hi - self.lo)
        return PLOT_LEFT + frac * (PLOT_RIGHT - PLOT_LEFT)

    def ticks(self):
        """Decades; with 2x and 5x as well where the axis spans under 3 decades, so that short
        axes still carry several labels."""
        mantissas = (1, 2, 5) if self.hi - self.lo < 3 else (1,)
        ticks = []
        for decade in range(math.floor(self.lo), math.ceil(self.hi) + 1):
            for m in mantissas:
                value = m * 10.0 ** decade
                if self.lo <= math.log10(value) <= self.hi:
                    ticks.append(value)
        return ticks


class LinearScale:
    """Maps recall@10 to y, from a bit below the lowest recall (or the target line, whichever
    is lower, so that the line is always drawn) up to 1.0."""

    def __init__(self, values):
        lo = min(min(values), RECALL_TARGET)
        # The pad keeps the lowest marker off the axis; its floor avoids a zero span when every
        # recall is 1.0 and the target is too.
        pad = max(0.06 * (1.0 - lo), 0.005)
        self.lo, self.hi = lo - pad, 1.0

    def __call__(self, value):
        frac = (value - self.lo) / (self.hi - self.lo)
        return PLOT_BOTTOM - frac * (PLOT_BOTTOM - PLOT_TOP - HEADROOM)

    def ticks(self):
        """Round steps (1, 2 or 5 times a power of ten) giving at most about 8 ticks."""
        span = self.hi - self.lo
        step = None
        for exponent in range(-4, 1):
            for m in (1, 2, 5):
                candidate = m * 10.0 ** exponent
                if span / candidate <= 8:
                    step = candidate
                    break
            if step:
                break
        step = step or 1.0
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        first = math.ceil(self.lo / step - 1e-9)
        ticks = []
        k = first
        while k * step <= self.hi + 1e-9:
            ticks.append((round(k * step, decimals + 2), decimals))
            k += 1
        return ticks


# ---------------------------------------------------------------------------------------------
# Label placement
#
# Points of different indexes crowd near recall 1.0 and at low latency, so labels are placed
# greedily: for each point, the candidate position (around the marker, then further out with a
# leader line) that overlaps least with markers, labels already placed, the lines and the plot
# edges. Boxes are estimates (no font metrics without a browser), sized generously.


def text_box(x, y, text, anchor):
    """(left, top, right, bottom) of a label whose baseline starts at (x, y)."""
    width = CHAR_PX * len(text)
    left = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
    return (left, y - FONT_PX * 0.85, left + width, y + FONT_PX * 0.3)


def overlap(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def outside_area(box, bounds):
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area - overlap(box, bounds)


def candidates(px, py):
    """(x, y, anchor, distance) around a point, nearest first; right of the point is preferred
    because the lines run left to right."""
    for d in (9, 20, 34):
        diag = d * 0.75
        yield px + d, py + 4, "start", d
        yield px - d, py + 4, "end", d
        yield px + diag, py - diag, "start", d
        yield px + diag, py + diag + 8, "start", d
        yield px - diag, py - diag, "end", d
        yield px - diag, py + diag + 8, "end", d
        yield px, py - d, "middle", d
        yield px, py + d + 8, "middle", d


def segment_samples(points):
    """Points every few units along the polylines, to count how much of a line a label hides."""
    samples = []
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        steps = max(1, int(math.hypot(x1 - x0, y1 - y0) / 4))
        samples += [(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
                    for i in range(steps + 1)]
    return samples


def place_labels(points, obstacles, line_samples):
    """points: [(px, py, text)]; obstacles: boxes to keep clear (the target line's label, the
    ring). Returns [(x, y, anchor, leader)] in the same order."""
    # Inside the frame, where the tick labels and the legend cannot be hit.
    bounds = (PLOT_LEFT + 2, PLOT_TOP + 2, PLOT_RIGHT - 2, PLOT_BOTTOM - 2)
    markers = [(px - MARKER_R - 2, py - MARKER_R - 2, px + MARKER_R + 2, py + MARKER_R + 2)
               for px, py, _ in points]
    placed = [None] * len(points)
    boxes = list(obstacles)

    # Most crowded points first: they have the fewest good positions left.
    def crowding(i):
        px, py, _ = points[i]
        return -sum(1 for qx, qy, _ in points if math.hypot(qx - px, qy - py) < 60)

    for i in sorted(range(len(points)), key=crowding):
        px, py, text = points[i]
        best = None
        for order, (x, y, anchor, d) in enumerate(candidates(px, py)):
            box = text_box(x, y, text, anchor)
            cost = (10 * sum(overlap(box, b) for b in boxes)
                    + 10 * sum(overlap(box, m) for m in markers)
                    + 20 * outside_area(box, bounds)
                    + 15 * sum(1 for sx, sy in line_samples
                               if box[0] <= sx <= box[2] and box[1] <= sy <= box[3])
                    + 3 * d + 0.5 * order)
            if best is None or cost < best[0]:
                best = (cost, x, y, anchor, d, box)
        _, x, y, anchor, d, box = best
        placed[i] = (x, y, anchor, d > 9)
        boxes.append(box)
    return placed


# ---------------------------------------------------------------------------------------------
# SVG


def marker_svg(shape, x, y, colour):
    r = MARKER_R
    fill = f'fill="{colour}" stroke="#fff" stroke-width="1"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" {fill}/>'
    if shape == "square":
        s = r * 0.9
        return f'<rect x="{x - s:.1f}" y="{y - s:.1f}" width="{2 * s:.1f}" height="{2 * s:.1f}" {fill}/>'
    if shape in ("triangle", "triangle-down"):
        k = 1 if shape == "triangle" else -1
        pts = [(x, y - k * r * 1.2), (x - r * 1.1, y + k * r * 0.8), (x + r * 1.1, y + k * r * 0.8)]
    elif shape == "diamond":
        pts = [(x, y - r * 1.3), (x + r * 1.1, y), (x, y + r * 1.3), (x - r * 1.1, y)]
    else:  # cross
        t, s = r * 0.45, r * 1.1
        pts = [(x - t, y - s), (x + t, y - s), (x + t, y - t), (x + s, y - t), (x + s, y + t),
               (x + t, y + t), (x + t, y + s), (x - t, y + s), (x - t, y + t), (x - s, y + t),
               (x - s, y - t), (x - t, y - t)]
    return f'<polygon points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}" {fill}/>'


def axes_svg(xs, ys):
    parts = []
    for value in xs.ticks():
        x = xs(value)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{PLOT_TOP}" x2="{x:.1f}" '
                     f'y2="{PLOT_BOTTOM}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{PLOT_BOTTOM + 16}" '
                     f'text-anchor="middle">{esc(tick_text(value))}</text>')
    for value, decimals in ys.ticks():
        y = ys(value)
        parts.append(f'<line class="grid" x1="{PLOT_LEFT}" y1="{y:.1f}" x2="{PLOT_RIGHT}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{PLOT_LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{value:.{decimals}f}</text>')
    parts.append(f'<rect class="frame" x="{PLOT_LEFT}" y="{PLOT_TOP}" '
                 f'width="{PLOT_RIGHT - PLOT_LEFT}" height="{PLOT_BOTTOM - PLOT_TOP}"/>')
    parts.append(f'<text class="axis" x="{(PLOT_LEFT + PLOT_RIGHT) / 2}" y="{PLOT_BOTTOM + 40}" '
                 'text-anchor="middle">single-query latency p50 (ms, log scale)</text>')
    cy = (PLOT_TOP + PLOT_BOTTOM) / 2
    parts.append(f'<text class="axis" x="18" y="{cy}" text-anchor="middle" '
                 f'transform="rotate(-90 18 {cy})">recall@10</text>')
    return parts


def target_line_svg(ys, markers):
    """The dashed recall@10 = 0.95 line and its label, put at whichever end of the line hides
    fewer markers. Returns (svg parts, label box for the point-label placement to avoid)."""
    y = ys(RECALL_TARGET)
    text = f"recall@10 = {RECALL_TARGET:.2f}"
    options = []
    for x, anchor in ((PLOT_RIGHT - 4, "end"), (PLOT_LEFT + 4, "start")):
        for ty in (y - 4, y + 13):
            box = text_box(x, ty, text, anchor)
            hidden = sum(overlap(box, m) for m in markers)
            options.append((hidden, x, ty, anchor, box))
    hidden, x, ty, anchor, box = min(options, key=lambda o: o[0])
    parts = [f'<line class="target" x1="{PLOT_LEFT}" y1="{y:.1f}" x2="{PLOT_RIGHT}" '
             f'y2="{y:.1f}"/>',
             f'<text class="target-label" x="{x:.1f}" y="{ty:.1f}" text-anchor="{anchor}">'
             f'{esc(text)}</text>']
    return parts, box


def legend_svg(factories, styles, has_best):
    parts = []
    y = PLOT_TOP + 8
    for factory in factories:
        colour, shape = styles[factory]
        parts.append(f'<line x1="{LEGEND_X}" y1="{y}" x2="{LEGEND_X + 24}" y2="{y}" '
                     f'stroke="{colour}" stroke-width="1.5"/>')
        parts.append(marker_svg(shape, LEGEND_X + 12, y, colour))
        parts.append(f'<text class="legend" x="{LEGEND_X + 32}" y="{y + 4}">{esc(factory)}</text>')
        y += 20
    if has_best:
        y += 6
        parts.append(f'<circle class="best" cx="{LEGEND_X + 12}" cy="{y}" r="{RING_R}"/>')
        parts.append(f'<text class="legend" x="{LEGEND_X + 32}" y="{y - 2}">fastest at</text>')
        parts.append(f'<text class="legend" x="{LEGEND_X + 32}" y="{y + 11}">'
                     f'recall@10 &#8805; {RECALL_TARGET:.2f}</text>')
    return parts


def chart_svg(pool, rows, styles):
    xs = LogScale([r["latency_ms_p50"] for r in rows])
    ys = LinearScale([r["recall_at_10"] for r in rows])
    best = fastest_at_target(rows)
    factories = list(dict.fromkeys(r["index"] for r in rows))

    series = {f: sorted((r for r in rows if r["index"] == f), key=lambda r: r["latency_ms_p50"])
              for f in factories}
    coords = {id(r): (xs(r["latency_ms_p50"]), ys(r["recall_at_10"])) for r in rows}
    markers = [(x - MARKER_R - 2, y - MARKER_R - 2, x + MARKER_R + 2, y + MARKER_R + 2)
               for x, y in coords.values()]

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" aria-label="recall@10 against p50 latency, pool {pool:,} rows">']
    parts += axes_svg(xs, ys)
    target_parts, target_box = target_line_svg(ys, markers)
    parts += target_parts

    line_samples = []
    for factory, members in series.items():
        points = [coords[id(r)] for r in members]
        line_samples += segment_samples(points)
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{styles[factory][0]}" stroke-width="1.5" '
                         f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>')

    obstacles = [target_box]
    if best is not None:
        bx, by = coords[id(best)]
        parts.append(f'<circle class="best" cx="{bx:.1f}" cy="{by:.1f}" r="{RING_R}"/>')
        obstacles.append((bx - RING_R - 2, by - RING_R - 2, bx + RING_R + 2, by + RING_R + 2))

    # Labels before markers in the document so that markers (and their tooltips) stay on top.
    label_points = [(*coords[id(r)], search_label(r)) for r in rows]
    for r, (px, py, text), (x, y, anchor, leader) in zip(
            rows, label_points, place_labels(label_points, obstacles, line_samples)):
        colour = styles[r["index"]][0]
        if leader:
            box = text_box(x, y, text, anchor)
            lx = min(max(px, box[0]), box[2])
            ly = min(max(py, box[1]), box[3])
            parts.append(f'<line class="leader" x1="{px:.1f}" y1="{py:.1f}" x2="{lx:.1f}" '
                         f'y2="{ly:.1f}" stroke="{colour}"/>')
        parts.append(f'<text class="point-label" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" '
                     f'fill="{colour}">{esc(text)}</text>')

    for r in rows:
        colour, shape = styles[r["index"]]
        x, y = coords[id(r)]
        parts.append(f'<g class="point"><title>{esc(tooltip(r))}</title>'
                     f'{marker_svg(shape, x, y, colour)}</g>')

    parts += legend_svg(factories, styles, best is not None)
    parts.append("</svg>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# HTML


def table_html(rows, best):
    head = ("index", "search", "p50 ms", "p99 ms", "queries/s", "recall@10",
            "MeanRecall (exact)", "build s", "MiB")
    lines = ["<table>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
             + "</tr></thead>", "<tbody>"]
    for r in rows:
        cells = [r["index"], search_label(r), f"{r['latency_ms_p50']:.3f}",
                 f"{r['latency_ms_p99']:.3f}", f"{r['queries_per_second']:,.0f}",
                 f"{r['recall_at_10']:.4f}",
                 f"{r['mean_recall']:.2f} ({r['mean_recall_exact']:.2f})",
                 f"{r['build_seconds']:.2f}", f"{r['size_mib']:.1f}"]
        cls = ' class="best"' if r is best else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def caption_html(best):
    if best is None:
        return (f"<p class=\"caption\">No setting reaches recall@10 &#8805; {RECALL_TARGET:.2f} "
                "in this pool.</p>")
    return (f"<p class=\"caption\">Fastest at recall@10 &gt;= {RECALL_TARGET:.2f}: "
            f"<strong>{esc(setting_name(best))}</strong>, p50 {best['latency_ms_p50']:.3f} ms "
            f"(recall@10 {best['recall_at_10']:.4f}, {best['size_mib']:.1f} MiB, built in "
            f"{best['build_seconds']:.1f} s).</p>")


def pool_heading(pool, rows):
    extras = {r.get("extra") for r in rows}
    heading = f"{pool:,} rows"
    # `shopclip bench index` fills the pool beyond the split's real images with random unit
    # vectors (launch/index.cpp); "extra" counts them.
    if len(extras) == 1 and isinstance(next(iter(extras)), int) and next(iter(extras)) > 0:
        extra = next(iter(extras))
        heading += f" ({pool - extra:,} real images + {extra:,} random unit vectors)"
    return heading


def machine_text(result):
    """The machine as the JSON records it: a "machine" entry if the bench wrote one, and its
    "threads" field. Nothing is added that the file does not say."""
    parts = []
    machine = result.get("machine")
    if isinstance(machine, dict):
        parts.append(", ".join(f"{k} {v}" for k, v in machine.items()))
    elif machine:
        parts.append(str(machine))
    if "threads" in result:
        threads = result["threads"]
        parts.append(f"{threads} thread{'' if threads == 1 else 's'}")
    return "; ".join(parts)


def inputs_html(results):
    items = []
    for path, result in results:
        facts = []
        for key, label in (("run", "run"), ("checkpoint", "checkpoint"), ("split", "split")):
            if key in result:
                facts.append(f"{label} {result[key]}")
        if "queries" in result:
            facts.append(f"{result['queries']:,} queries")
        if "dim" in result:
            facts.append(f"{result['dim']} dims")
        machine = machine_text(result)
        if machine:
            facts.append(f"machine: {machine}")
        pools = sorted({r["pool"] for r in result.get("rows", [])})
        if pools:
            facts.append("pools " + ", ".join(f"{p:,}" for p in pools))
        items.append(f"<li><code>{esc(os.path.basename(path))}</code>: {esc('; '.join(facts))}"
                     "</li>")
    return "<ul class=\"inputs\">\n" + "\n".join(items) + "\n</ul>"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 1.5em auto; max-width: 1000px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.4em; }
h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
code { font-size: 0.95em; }
svg { width: 100%; max-width: 960px; height: auto; display: block; }
svg text { font-family: Helvetica, Arial, sans-serif; font-size: 11px; }
svg .tick { fill: #444; }
svg .axis { font-size: 12px; fill: #222; }
svg .legend { font-size: 12px; fill: #222; }
svg .grid { stroke: #e4e4e4; stroke-width: 1; }
svg .frame { fill: none; stroke: #888; stroke-width: 1; }
svg .target { stroke: #555; stroke-width: 1; stroke-dasharray: 5 4; }
svg .target-label { fill: #555; font-style: italic; }
svg .best { fill: none; stroke: #111; stroke-width: 2; }
svg .leader { stroke-width: 0.8; opacity: 0.7; }
svg .point-label { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
svg .point:hover * { stroke: #111; stroke-width: 1.5; }
.caption { margin: 0.3em 0 0.8em; }
table { border-collapse: collapse; font-size: 0.85em; font-variant-numeric: tabular-nums; }
th, td { padding: 2px 8px; border-bottom: 1px solid #e0e0e0; text-align: right; }
th:nth-child(-n+2), td:nth-child(-n+2) { text-align: left; }
th { border-bottom: 1px solid #888; }
tr.best td { background: #f1f1f1; font-weight: 600; }
"""


def page_html(results, pools, styles, title):
    names = ", ".join(os.path.basename(path) for path, _ in results)
    intro = (
        "FAISS indexes on the embeddings of a run, measured by <code>shopclip bench index</code>: "
        "for each pool size, recall@10 (the share of exact search's top 10 that an index's "
        "approximate top 10 returns) against single-query latency (p50, one query per search "
        "call, log scale). Each marker is one index at one search setting; markers of one "
        "factory string are joined in order of latency. The dashed line marks recall@10 = "
        f"{RECALL_TARGET:.2f}; the ring marks the fastest setting at or above it. Hover a marker "
        f"for all its figures. Input files: {esc(names)}.")
    notes = (
        "Table columns: p50/p99 ms, single-query latency; queries/s, all queries in one batch "
        "call; MeanRecall, the official score of the index's predictions, with that of exact "
        "search over the same pool in brackets; build s, constructing the index and adding the "
        "pool (training included); MiB, FAISS's serialised index.")
    body = [f"<h1>{esc(title)}</h1>", f"<p>{intro}</p>", inputs_html(results),
            f"<p>{esc(notes)}</p>"]
    for pool, rows in pools.items():
        best = fastest_at_target(rows)
        body += [f"<h2>{esc(pool_heading(pool, rows))}</h2>", chart_svg(pool, rows, styles),
                 caption_html(best), table_html(rows, best)]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="HTML page to write")
    parser.add_argument("--title", default=TITLE, help="page title (default: %(default)s)")
    parser.add_argument("files", nargs="+", help="JSON output of `shopclip bench index`")
    args = parser.parse_args()

    results, rows = load_results(args.files)
    if not rows:
        sys.exit("index_chart: no rows to plot")
    page = page_html(results, rows_by_pool(rows), factory_styles(rows), args.title)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(page)
    print(f"index_chart: wrote {args.out} ({len(page):,} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
