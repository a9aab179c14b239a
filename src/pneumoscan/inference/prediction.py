"""A film's result row (`Prediction`: what `predict`, its --json and the service give for each file) and the rows of
screened images: scored and labelled at the threshold, or refused by the guard or by a DICOM's view."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.data.decode import view_reason

if TYPE_CHECKING:
    from pneumoscan.inference.ood import OODResult


@dataclass
class Prediction:
    """One file's result; `error` is set (and the rest None) when the file could not be read."""

    path: str
    probability: float | None
    label: str | None
    threshold: float
    error: str | None = None
    in_distribution: bool | None = None  # None when the model has no out-of-distribution guard
    ood_reason: str | None = None
    # P within the threshold's 95 % interval (`Predictor.threshold_ci95`): the label stands but is uncertain.
    # None without a probability or without an interval (a threshold given by hand).
    borderline: bool | None = None
    # set for a film under MIN_SIDE px on a side (a thumbnail: `size_warning`): predicted all the same, but too small
    # to read reliably, so the original should be sent
    size_warning: str | None = None
    # what refused the film, set with ood_reason: "blank" or "colour" (not a chest X-ray), "grey_levels", "two_tone",
    # "dithered", "posterised" or "upside_down" (a chest X-ray the model cannot read as sent), "image" or "features" (unlike the training films),
    # "view" (a DICOM film of a view other than plain frontal (AP or PA) by its header: `not_frontal_view`)
    refused_by: str | None = None
    # the pneumonia prevalence `probability` (and `threshold`) assume: `--prevalence`, else the model's prior (as the
    # service's `prevalence`); None only in a Prediction made by hand
    prevalence: float | None = None

    def to_dict(self) -> dict[str, object]:
        """The result as a plain dict: a row of `predict --json`."""
        return asdict(self)



def screened_rows(names: list[str], probs: np.ndarray, verdicts: Sequence[OODResult | None],
                  small: Sequence[str | None], views: Sequence[str | None], *, threshold: float, prevalence: float,
                  label_for: Callable[[float], str], borderline: Callable[[float], bool | None]) -> list[Prediction]:
    """A `Prediction` for each of `names`, from its probability, the guard's verdict (None without a guard), its
    size warning and its DICOM view when not frontal: a film refused by its view or by the guard gets no
    probability and no label; any other its probability, labelled by `label_for` at `threshold`, and whether it is
    `borderline`."""
    out = []
    for name, prob, verdict, warning, view in zip(names, probs, verdicts, small, views):
        if view is not None:  # the header says what the image statistics can only guess
            out.append(Prediction(name, None, None, threshold, in_distribution=False,
                                  ood_reason=view_reason(view), size_warning=warning, refused_by="view",
                                  prevalence=prevalence))
        elif verdict is not None and not verdict.in_distribution:
            out.append(Prediction(name, None, None, threshold, in_distribution=False,
                                  ood_reason=verdict.message, size_warning=warning,
                                  refused_by=verdict.refused_by, prevalence=prevalence))
        else:
            out.append(Prediction(name, float(prob), label_for(float(prob)), threshold,
                                  in_distribution=None if verdict is None else True,
                                  borderline=borderline(float(prob)), size_warning=warning,
                                  prevalence=prevalence))
    return out
