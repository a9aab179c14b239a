"""Out-of-distribution guard: does an input look like the frontal chest X-rays the model was trained on?

How to call it (Predictor, CLI, service) - one forward pass serves both the prediction and the guard::

    from pneumoscan.inference.ood import colourfulness, forward_with_features, load_guard
    guard = load_guard(model_path)     # once, beside the model: OODGuard, or None when no guard file
    # per batch of files: read each file once, use the bytes twice
    datas = [Path(f).read_bytes() for f in files]
    images, levels = zip(*(load_image_with_levels(d, meta.image_size, name=str(f)) for f, d in zip(files, datas)))
    images = np.stack(images)                            # load_image_with_levels: data.preprocess
    colours = [colourfulness(d, name=str(f)) for f, d in zip(files, datas)]  # the raw bytes: decoding drops colour
    logits, feats = forward_with_features(model, images, meta.preprocessing, batch_size=64, tta=meta.tta)
    probs = sigmoid(logits)            # the same logits as predict_logits(...) gives
    tones, dither, peaks = zip(*(jpeg_cues(d) for d in datas))  # JPEGs: decoded again at full size
    results = guard.check(images, features=feats, colourfulness=colours, grey_levels=levels,
                          two_tone=tones, dither=dither, peaks=peaks)  # list[OODResult]
    # not results[i].in_distribution -> report results[i].message (its words for the reader) and .refused_by (the
    # cause), results[i].to_dict() for JSON; keep the probability out of the verdict for such inputs

`guard.check(images, model=model, colourfulness=...)` also works (it runs its own forward pass), and
`colourfulness=None` / `grey_levels=None` / `two_tone=None` / `dither=None` / `peaks=None` skip those signals. A guard is tied to the
exact model file it was fitted for (SHA-256); `load_guard` raises InputError for a stale guard.

Signals, each turned into a ratio to its 99th percentile on held-out training X-rays:

* ``image``: Mahalanobis distance of cheap statistics of the (S, S) grayscale input (intensity
  moments, dark/bright fractions, histogram entropy, edge and fine-texture energy, left-right symmetry,
  and the 8x8 layout of the standardised image) to the training X-rays.
* ``features``: class-conditional Mahalanobis distance (Lee et al., NeurIPS 2018; tied, Ledoit-Wolf
  shrunk covariance) of the classifier's penultimate features - the input of the model's final
  ``nn.Linear``, taken with a forward hook, so it works for every registered model.
* ``colour``: Hasler & Suesstrunk (2003) colourfulness of the raw file, referenced to
  max(99th percentile, 15) - 15 is their bound for "not colourful"; X-rays are grayscale.

The score is the largest ratio. The threshold is the held-out (5-fold cross-fitted) quantile of the
score that rejects half of the allowed false-rejection rate, leaving margin for new scanners.

What a refusal says (`OODResult.message`) follows its cause (`refused_by`): only cues that no radiograph was sent
say "not a chest X-ray: <reason>" (``blank``; ``colour``, which wins over the other signals and the rules below,
save blank, once its ratio is above the threshold). The ``image`` and ``features`` signals are quantile limits fitted on the training X-rays, so they
refuse a few real chest X-rays too (the shipped guard 17 of its 5,216 train films): their message says what was
measured ("unlike the chest X-rays this model was trained on (image statistics: ...)") and to read a frontal
chest X-ray so refused without the model ("frontal pediatric chest X-ray" for the shipped model's guard, whose card
says so: `unlike_reason`; a site's own model may be trained on adults' films).

Five rules refuse chest X-rays in a form the model cannot read, whatever the score (their message
says what to do instead of "not a chest X-ray"); all use fixed constants measured on the training
films (`bench/guard_cues.py`, `bench/dither_cue.py`, `bench/few_grey_levels.py`), so guards fitted before them need no refit (save a guard
fitted before the dithered rule on unusually grainy JPEGs, which refuses above ``DITHER_ENERGY`` whatever its films):

* grey levels: a file that decodes to at most ``MAX_GREY_LEVELS`` distinct grey levels at its own
  resolution (before resizing) is binary (black-and-white, dithered) or posterised. Dithering averages
  to grey at the model's size, so the other signals pass such a film.
* two tones: a JPEG with more than ``TWO_TONE_SHARE`` of its pixels, decoded at full size, within
  ``TWO_TONE_BAND`` grey levels of black or white is a black-and-white picture whose compression
  artefacts hide its two levels from the grey-level count (the decoder's reduced-size JPEG decoding
  also averages the dither to grey, hence the second, full-size decode).
* dithered: a JPEG or 8-bit PNG, TIFF or BMP of at least ``DITHER_MIN_SIDE`` px on its shorter side (a smaller film's own grain is larger)
  whose dither energy (mean absolute difference of each pixel from the mean of its 2 x 2
  block, decoded at full size, `dither_energy`) is above the guard's ``dither_cut`` (``DITHER_ENERGY``, or 4 times
  the median of its fit's films when they are grainier: `fit.fitted_dither_cut`): a few grey levels mixed pixel by
  pixel (a halftoned, printed-and-scanned or palette copy saved as JPEG, or its pixels or a resized copy saved
  lossless), which the compression turns into a continuum of levels that the grey-level count cannot see; at the
  model's size the dither averages to grey.
* posterised: a JPEG whose peak excess (`peak_excess`: the share of its pixels, decoded at full size, in sharp peaks
  of its histogram, after averaging over its DC quantisation step, whose comb of peaks is the encoder's) is above
  ``PEAK_EXCESS``: a film reduced to a few flat grey tones without dithering (a palette copy), whose tones survive
  compression as peaks; it passes the other signals and changes the model's label of many such films.
* upside down: the ``image`` distance of the image's 180-degree rotation and vertical flip, from the
  stored image model (the global statistics do not change under these flips; the 8x8 layout is flipped).
  The image is refused when a flipped version would pass the image check and is more typical than the
  image by more than ``UPSIDE_DOWN_GAIN`` (in units of the image signal's 99th percentile).

Modules: `cues` (measured on a file or image without a fitted model: colourfulness, two tones, dither energy and peak
excess, from `pneumoscan.data.file_cues`, which the image cache keeps; pixel spread, the image statistics and their flips;
the rules' constants), `features` (the classifier's penultimate
features), `gaussian` (the Gaussian model with Ledoit-Wolf shrinkage), `guard` (`OODGuard`: the verdict,
the guard file, `load_guard`) and `fit` (`fit_guard`). The public names are importable from this package.
"""
from __future__ import annotations

from pneumoscan.inference.ood.cues import (
    BLANK_SPREAD,
    COLOUR_REFERENCE,
    DITHER_ENERGY,
    DITHER_MIN_SIDE,
    DITHER_WINDOW,
    MAX_GREY_LEVELS,
    PEAK_EXCESS,
    PEAK_WINDOW,
    TWO_TONE_BAND,
    TWO_TONE_MAX_PIXELS,
    TWO_TONE_SHARE,
    UPSIDE_DOWN_GAIN,
    colourfulness,
    colourfulness_of,
    dither_energy,
    image_statistics,
    jpeg_cues,
    peak_excess,
    two_tone_share,
    two_tone_share_of,
)
from pneumoscan.inference.ood.features import final_linear, forward_with_features
from pneumoscan.inference.ood.fit import fit_guard
from pneumoscan.inference.ood.gaussian import Gaussian
from pneumoscan.inference.ood.guard import (
    GUARD_FORMAT,
    REFUSAL_KINDS,
    OODGuard,
    OODResult,
    dithered_reason,
    grey_levels_reason,
    guard_path,
    is_guard_file,
    load_guard,
    posterised_reason,
    refusal_cause,
    refusal_kind,
    two_tone_reason,
)

__all__ = [
    "BLANK_SPREAD", "COLOUR_REFERENCE", "DITHER_ENERGY", "DITHER_MIN_SIDE", "DITHER_WINDOW", "GUARD_FORMAT", "MAX_GREY_LEVELS",
    "PEAK_EXCESS", "PEAK_WINDOW", "REFUSAL_KINDS", "TWO_TONE_BAND", "TWO_TONE_MAX_PIXELS", "TWO_TONE_SHARE", "UPSIDE_DOWN_GAIN", "Gaussian",
    "OODGuard", "OODResult", "colourfulness", "colourfulness_of", "dither_energy", "dithered_reason", "final_linear",
    "fit_guard", "forward_with_features", "grey_levels_reason", "guard_path", "image_statistics", "is_guard_file",
    "jpeg_cues", "load_guard", "peak_excess", "posterised_reason", "refusal_cause", "refusal_kind", "two_tone_reason",
    "two_tone_share",
    "two_tone_share_of",
]
