"""The Figure class of pneumoscan's figures: a notebook shows one as its picture, without pyplot.

IPython draws a plain matplotlib Figure only once pyplot's inline backend has registered how to (on `import
matplotlib.pyplot`); before that a cell ending in `pneumoscan.plot_roc(metrics)` showed `<Figure size 1120x590
with 3 Axes>`. A `_repr_png_` is what IPython's display asks any object for.
"""
from __future__ import annotations

from matplotlib.figure import Figure


class NotebookFigure(Figure):
    """A matplotlib Figure that IPython (Jupyter, VS Code, Colab) displays as a PNG, as the report embeds it."""

    def _repr_png_(self) -> bytes:
        from pneumoscan.report.figures import to_png

        return to_png(self)
