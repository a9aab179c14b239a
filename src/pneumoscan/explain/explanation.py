"""Explain one film: its prediction, screened like `predict`, and the Grad-CAM heatmap of the evidence for its label."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pneumoscan.inference.prediction import Prediction
    from pneumoscan.inference.predictor import Predictor

DISPLAY_SIDE = 1024  # px: the figure shows the film at most this large, whatever its size


@dataclass
class Explanation:
    """One film explained: `prediction` as `predict` gives it; `heatmap` (S, S) float32 in [0, 1] at the model's
    input size S, the evidence for `prediction.label`; `image` the film as decoded (uint8 grayscale, shrunk to at
    most DISPLAY_SIDE px on its long side); the name of the model, the 95 % interval of its threshold (None
    without one) and an ensemble's members the heatmap leaves out (`unmapped_members`), which the figure's title
    states."""

    prediction: Prediction
    heatmap: np.ndarray = field(repr=False)
    image: np.ndarray = field(repr=False)
    model_name: str = ""
    threshold_ci95: tuple[float, float] | None = None
    unmapped: tuple[str, ...] = ()

    def overlay(self) -> np.ndarray:
        """RGB uint8 (H, W, 3): `image` with the heatmap upsampled and blended on top."""
        from pneumoscan.explain.gradcam import overlay

        return overlay(self.image, self.heatmap)

    @property
    def empty(self) -> bool:
        """Whether Grad-CAM found no positive evidence for the label (an all-zero map draws as the bare film)."""
        return not self.heatmap.any()

    def title(self) -> str:
        """What the figure says above the film: file, label, P against the threshold (and whether borderline),
        what the heatmap shows, the model, and a thumbnail's size warning."""
        from pneumoscan.errors import decimals
        from pneumoscan.report.figures import printable

        prediction = self.prediction
        prob, label = float(prediction.probability or 0.0), str(prediction.label)
        interval = self.threshold_ci95 if prediction.borderline else None
        within = f"borderline: within its 95 % interval {interval[0]:.3f} to {interval[1]:.3f}" if interval else ""
        # an all-zero map draws as the bare film: say so, or it reads as "no evidence anywhere" or a drawing fault
        shows = f"empty: Grad-CAM found no positive evidence for {label}" if self.empty else f"evidence for {label}"
        # decimals: a confident film's P = 0.99998 is not '1.000' (certainty), as report's case tiles show it
        return (f"{printable(Path(prediction.path).name)}: {label}  P(pneumonia) = {decimals(prob, 3)}  (threshold "
                f"{prediction.threshold:.3f}{'; ' + within if within else ''})\n"
                f"heatmap: {shows}, model {self.model_name}{left_out_clause(self.unmapped)}"
                + (f"\nwarning: {prediction.size_warning}" if prediction.size_warning else ""))

    def figure(self) -> Figure:
        """The figure `pneumoscan explain` saves: the film beside its Grad-CAM overlay, under `title()`; a
        matplotlib Figure (a notebook shows it, `fig.savefig(path)` writes it)."""
        from pneumoscan.report.figures import explanation

        return explanation(self.image, self.overlay(), self.title())


def left_out_clause(unmapped: tuple[str, ...] | list[str]) -> str:
    """What a heatmap of an ensemble leaves out, after its model's name: ' (not its mlp member: no feature map to
    draw)', as Grad-CAM maps only the members with one; empty when it leaves out none."""
    if not unmapped:
        return ""
    members = f"{', '.join(unmapped)} member{'s' if len(unmapped) > 1 else ''}"
    return f" (not its {members}: no feature map to draw)"


def display_copy(gray: np.ndarray) -> np.ndarray:
    """The film shrunk to at most DISPLAY_SIDE px on its long side for the figure (the model has its own input):
    a 150 MP film would otherwise be coloured and blended at full size, gigabytes for a picture on a screen."""
    from PIL import Image

    if max(gray.shape) <= DISPLAY_SIDE:
        return gray
    image = Image.fromarray(gray)
    image.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(image)


def explain_file(predictor: Predictor, image: str | os.PathLike | bytes | np.ndarray | Any) -> Explanation:
    """Predict the film `image` with `predictor` and draw Grad-CAM for the label it gets: a path, or a film in memory
    as `Predictor.predict` takes it (`film_bytes`: bytes, a pydicom Dataset, a PIL image, an array); InputError when
    the model has no layer to explain or the film is unreadable; RefusedFilm (an InputError) when the guard refuses it
    (no heatmap without a prediction)."""
    from pneumoscan.data.decode import read_file, reading_film
    from pneumoscan.data.preprocess import load_image_and_original
    from pneumoscan.errors import InputError, RefusedFilm, one_name
    from pneumoscan.explain.gradcam import cam_layers, gradcam_for_image, unmapped_members
    from pneumoscan.inference.inputs import film_bytes

    try:
        layers = cam_layers(predictor.model, predictor.meta)
    except InputError as err:
        raise InputError(f"{predictor.path}: {err}") from None
    if isinstance(image, (str, os.PathLike)):
        name = str(image)
        data = read_file(image, name)
    else:
        data, name = film_bytes(image, "gradcam")
    predictor.warn_unguarded()  # once there is a film to score: an unreadable one gets its error alone
    full, model_input, levels, rgb, deep = load_image_and_original(data, predictor.size, name=name)
    original = display_copy(full)
    with reading_film(one_name(name), data):  # its cues' reads: a memory shortage names the film
        decoded = predictor.decoded(data, model_input, levels, rgb, gray=full, deep=deep)  # a lossless file's cues: these pixels
    del full, rgb  # a large film: only its display copy is needed from here on
    (result,) = predictor.decoded_results([name], [decoded])
    if result.in_distribution is False:
        small = f"; it is {result.size_warning}" if result.size_warning else ""
        raise RefusedFilm(f"{name}: {result.ood_reason}; no prediction or heatmap made{small}")
    target = predictor.meta.class_names.index(str(result.label))
    cam = gradcam_for_image(predictor.model, predictor.meta, model_input, target=target, layers=layers)
    return Explanation(result, cam, original, predictor.meta.model_name, predictor.threshold_ci95,
                       tuple(unmapped_members(predictor.meta, layers)))
