"""Report figures with matplotlib (Agg, no pyplot state): each function returns a Figure; `to_png` renders it.

Colours are the Okabe-Ito palette (distinguishable with colour-vision deficiency); curves also differ
by line style and markers, so nothing depends on colour alone.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from pneumoscan.report.html import fmt
from pneumoscan.report.run import HISTORY_NAMES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

OKABE_ITO = {
    "blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
    "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000",
}
SERIES_COLOURS = [OKABE_ITO[k] for k in ("blue", "vermillion", "green", "orange", "purple", "sky", "black")]
LINE_STYLES = ["-", "--", "-.", ":"]
HEATMAP_CMAP = "inferno"
DPI = 110


@dataclass
class Curve:
    """One ROC or PR curve: x/y values, a legend label and an optional operating point (x, y)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    point: tuple[float, float] | None = None


@dataclass
class Tile:
    """One case in an image grid: the original (grayscale), its overlay (RGB) and a caption."""

    image: np.ndarray
    overlay: np.ndarray | None
    caption: str
    overlay_label: str = "Grad-CAM overlay"


def new_figure(width: float, height: float) -> Figure:
    """A Figure drawn by the Agg canvas (thread-safe, no global pyplot state), which a notebook shows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from pneumoscan.report.notebook_figure import NotebookFigure

    fig = NotebookFigure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure, dpi: int = DPI) -> bytes:
    """Render a figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def _style(ax: Axes, xlabel: str, ylabel: str, title: str | None = None) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def learning_curves(history: Sequence[dict[str, float]], best_epoch: int | None,
                    train_label: str = "training loss (the training objective)") -> Figure:
    """Training loss (`train_label` says what it sums), validation BCE, val ROC AUC and val accuracy per epoch; the
    best epoch as a dotted line."""
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig = new_figure(12, 4.4)
    axes = fig.subplots(1, 3)
    panels = [
        (axes[0], [("train_loss", train_label, "blue", "o"),
                   ("val_loss", f"{HISTORY_NAMES['val_loss']} (binary cross-entropy)", "vermillion", "s")], "loss",
         "Loss"),
        (axes[1], [("val_auc", HISTORY_NAMES["val_auc"], "green", "^")], "ROC AUC", "Validation ROC AUC"),
        (axes[2], [("val_accuracy", HISTORY_NAMES["val_accuracy"], "orange", "D")], "accuracy", "Validation accuracy"),
    ]
    for ax, series, ylabel, title in panels:
        for i, (key, label, colour, marker) in enumerate(series):
            values = [row.get(key, math.nan) for row in history]
            ax.plot(epochs, values, color=OKABE_ITO[colour], marker=marker, markersize=4, linestyle=LINE_STYLES[i],
                    label=label)
        if best_epoch:
            ax.axvline(best_epoch, color=OKABE_ITO["black"], linestyle=":", linewidth=1.2, label=f"best epoch ({best_epoch})")
        _style(ax, "epoch", ylabel, title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # below: no curve hidden
    return fig


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], threshold: float, films: str = "") -> Figure:
    """2x2 confusion matrix with counts and the share of each true class; `films` (which they are) under the title."""
    counts = np.asarray(matrix, dtype=float)
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    fig = new_figure(4.8, 4.2)
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    names = {(0, 0): "TN", (0, 1): "FP", (1, 0): "FN", (1, 1): "TP"}
    for (r, c), name in names.items():
        colour = "white" if shares[r, c] > 0.55 else "black"
        ax.text(c, r, f"{name}\n{int(counts[r, c])}\n({shares[r, c]:.1%} of true)", ha="center", va="center",
                color=colour, fontsize=10)
    ax.set_xticks([0, 1], [f"predicted\n{n}" for n in labels])
    ax.set_yticks([0, 1], [f"true\n{n}" for n in labels])
    ax.set_title(f"Confusion matrix at threshold {threshold:.4f}" + (f"\n{films}" if films else ""))
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    return fig


def roc_curves(curves: Sequence[Curve], title: str = "ROC curve") -> Figure:
    """ROC curves (false positive rate vs sensitivity) with operating points and the chance line."""
    fig = new_figure(5.4, 5.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=":", linewidth=1, label="chance")
    _plot_curves(ax, curves, drawstyle="default")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    _style(ax, "false positive rate (1 - specificity)", "sensitivity (recall)", title)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def pr_curves(curves: Sequence[Curve], prevalence: float | None, title: str = "Precision-recall curve") -> Figure:
    """Precision-recall curves with operating points and the no-skill line at the prevalence."""
    fig = new_figure(5.4, 5.0)
    ax = fig.subplots()
    if prevalence is not None and math.isfinite(prevalence):
        ax.axhline(prevalence, color="#888888", linestyle=":", linewidth=1, label=f"no skill (prevalence {prevalence:.2f})")
    _plot_curves(ax, curves, drawstyle="steps-post")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    _style(ax, "recall (sensitivity)", "precision (PPV)", title)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def _plot_curves(ax: Axes, curves: Sequence[Curve], drawstyle: str) -> None:
    for i, curve in enumerate(curves):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        ax.plot(curve.x, curve.y, color=colour, linestyle=LINE_STYLES[i % len(LINE_STYLES)], linewidth=1.8,
                label=curve.label, drawstyle=drawstyle)
        if curve.point is not None:
            ax.plot(*curve.point, marker="o", markersize=8, markerfacecolor="white", markeredgecolor=colour,
                    markeredgewidth=2, linestyle="none",
                    label="operating point" if len(curves) == 1 else None)


def reliability(mean_prob: np.ndarray, frequency: np.ndarray, counts: np.ndarray, ece: float,
                labels: np.ndarray, probs: np.ndarray, films: str = "") -> Figure:
    """Reliability diagram (observed frequency vs mean predicted probability) and the probability histogram;
    `films` (which they are) as the title."""
    fig = new_figure(10, 4.6 if films else 4.2)
    if films:
        fig.suptitle(f"Calibration on {films}", fontsize=11)
    ax, hist = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=":", linewidth=1, label="perfect calibration")
    ax.plot(mean_prob, frequency, color=OKABE_ITO["blue"], marker="o", linewidth=1.8, label=f"model (ECE {ece:.3f})")
    for x, y, n in zip(mean_prob, frequency, counts):
        ax.annotate(str(int(n)), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7, color="#555555")
    ax.set_xlim(-0.02, 1.02)  # a margin: bins at 0 or 1 (common) would be drawn half outside the axes
    ax.set_ylim(-0.02, 1.02)
    _style(ax, "mean predicted P(pneumonia) in bin", "observed share of PNEUMONIA", "Reliability (10 bins, n per bin)")
    ax.legend(fontsize=8, loc="upper left")
    # side by side in each bin: drawn over each other, a class's bar hid the other's where they shared a bin
    _, _, (normal, pneumonia) = hist.hist([probs[labels == 0], probs[labels == 1]], bins=np.linspace(0, 1, 21),
                                          color=[OKABE_ITO["sky"], OKABE_ITO["vermillion"]],
                                          label=["true NORMAL", "true PNEUMONIA"], edgecolor="white")
    for bar in pneumonia:
        bar.set_hatch("//")
    _style(hist, "predicted P(pneumonia)", "images", "Predicted probabilities by true class")
    hist.legend(fontsize=8)
    return fig


def group_bars(names: Sequence[str], values: Sequence[float], counts: Sequence[int], ylabel: str, xlabel: str,
               title: str | None = None) -> Figure:
    """Bar chart of one rate per group, with n printed on every bar (NaN bars are left empty); `title` (with which
    films they are) above it."""
    fig = new_figure(min(9.0, max(3.6, 1.1 * len(names) + 1.4)), 3.2 + (0.4 * len(title.splitlines()) if title else 0))
    ax = fig.subplots()
    heights = [0.0 if not math.isfinite(v) else v for v in values]
    colours = [SERIES_COLOURS[i % len(SERIES_COLOURS)] for i in range(len(names))]
    bars = ax.bar(range(len(names)), heights, color=colours, width=0.6 if len(names) > 1 else 0.4)
    for bar, value, n in zip(bars, values, counts):
        text = f"{fmt(value)}\n(n={n})"  # n/a for NaN
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.02, text, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), list(names))
    ax.set_ylim(0, 1.25)
    ax.set_yticks(np.linspace(0, 1, 6))
    _style(ax, xlabel, ylabel, title)
    ax.grid(False, axis="x")
    return fig


def printable(text: str) -> str:
    """`text` (a file or folder name) as matplotlib draws it literally: what no font can draw (the bytes of a name
    that is not UTF-8) escaped, e.g. \\udcf6, and every `$` escaped, since two of them start mathtext, which draws
    `price $5 or $6` as `price 5or6` and stops the figure on `a$^$b`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("$", r"\$")


def shortened(name: str, width: int = 30) -> str:
    """`name` cut in the middle to at most `width` characters (start and end kept, so the case number and the
    extension stay readable): a long file name ran into the next column of a case grid."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head):]


GRID_COLUMNS = 8  # cases per row of a case grid: more rows rather than a strip too wide to read


def case_grid(tiles: Sequence[Tile], title: str) -> Figure:
    """Originals above their Grad-CAM overlays, one column per case, at most GRID_COLUMNS cases to a row."""
    columns = max(1, min(GRID_COLUMNS, len(tiles)))
    bands = max(1, math.ceil(len(tiles) / columns))  # each band: a row of originals over a row of overlays
    widest = max((len(line) for line in title.splitlines()), default=0)
    fig = new_figure(max(2.4 * columns + 0.6, 0.1 * widest + 1.0), 5.0 * bands + 0.4)  # wide enough for the title
    fig.suptitle(title, fontsize=11)
    axes = np.asarray(fig.subplots(2 * bands, columns, squeeze=False))
    for slot in range(bands * columns):
        band, col = divmod(slot, columns)
        top, bottom = axes[2 * band, col], axes[2 * band + 1, col]
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if slot >= len(tiles):
            top.set_axis_off()
            bottom.set_axis_off()
            if not tiles:
                top.text(0.5, 0.5, "no cases", ha="center", va="center", transform=top.transAxes)
            continue
        tile = tiles[slot]
        top.imshow(tile.image, cmap="gray", vmin=0, vmax=255)
        top.set_title(tile.caption, fontsize=8)
        if tile.overlay is not None:
            bottom.imshow(tile.overlay)
            bottom.set_xlabel(tile.overlay_label, fontsize=8)
        else:
            bottom.set_axis_off()
            bottom.text(0.5, 0.5, "no Grad-CAM\n(no conv layer)", ha="center", va="center", transform=bottom.transAxes)
    _heat_colourbar(fig, list(axes[1::2, :].ravel()))
    return fig


def montage(maps: np.ndarray, columns: int, pad: int = 1) -> np.ndarray:
    """Tile (C, H, W) maps into one 2-D array, each scaled to [0, 1] on its own; padding is NaN."""
    count, height, width = maps.shape
    rows = math.ceil(count / columns)
    out = np.full((rows * (height + pad) - pad, columns * (width + pad) - pad), np.nan, dtype=np.float32)
    for i, fmap in enumerate(maps):
        lo, hi = float(fmap.min()), float(fmap.max())
        scaled = (fmap - lo) / (hi - lo) if hi > lo else np.zeros_like(fmap)
        r, c = divmod(i, columns)
        out[r * (height + pad): r * (height + pad) + height, c * (width + pad): c * (width + pad) + width] = scaled
    return out


def feature_maps(image: np.ndarray, maps: np.ndarray, layer: str, max_maps: int = 32) -> Figure:
    """The model input beside a montage of one conv layer's activation maps (each scaled to its own range)."""
    from matplotlib import colormaps

    shown = np.asarray(maps[:max_maps], dtype=np.float32)
    columns = min(8, len(shown))
    rows = math.ceil(len(shown) / columns)
    ratio = columns / rows  # the montage's width / height (square maps)
    fig_width = 12.0
    fig = new_figure(fig_width, fig_width / (1 + ratio) + 0.7)
    fig.suptitle(f"Input and the first {len(shown)} of {len(maps)} feature maps of layer '{layer}' "
                 "(channel number in each corner)", fontsize=11)
    left, right = fig.subplots(1, 2, width_ratios=[1, ratio])
    left.imshow(image, cmap="gray", vmin=0, vmax=255)
    left.set_title("model input", fontsize=9)
    cmap = colormaps["viridis"].with_extremes(bad="white")
    right.imshow(montage(shown, columns), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    height, width = shown.shape[1:]
    for i in range(len(shown)):
        r, c = divmod(i, columns)
        right.text(c * (width + 1), r * (height + 1), str(i), fontsize=7, color="white", va="top", ha="left",
                   bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})
    for ax in (left, right):
        ax.set_axis_off()
    return fig


def explanation(image: np.ndarray, overlay_rgb: np.ndarray, title: str) -> Figure:
    """The original image beside its Grad-CAM overlay, with a colour bar for the heatmap."""
    height, width = image.shape[:2]
    panel = 5.0
    aspect = width / max(1, height)
    widest = max(len(line) for line in title.splitlines()) if title else 0
    fig = new_figure(max(2 * panel * aspect + 1.2, 0.1 * widest + 1.0), panel + 0.9)  # a tall film: the title fits
    fig.suptitle(title, fontsize=11)
    left, right = fig.subplots(1, 2)
    left.imshow(image, cmap="gray", vmin=0, vmax=255)
    left.set_title("original", fontsize=9)
    right.imshow(overlay_rgb)
    right.set_title("Grad-CAM overlay", fontsize=9)
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    _heat_colourbar(fig, [right])
    return fig


def _heat_colourbar(fig: Figure, axes: list[Axes]) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=HEATMAP_CMAP)
    fig.colorbar(mappable, ax=axes, shrink=0.8, label="Grad-CAM (relative evidence)")
