"""Predict P(pneumonia) for files, bytes or decoded images with a loaded model artifact: the `Predictor`, which loads
the model, chooses its backend, decodes and screens films and gives their result rows."""
from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscan.artifact import file_sha256, load_artifact, read_meta, resolve_model_path
from pneumoscan.api import _BOOL, _BYTES, _FILM, _INT, _MODEL, _NUMBER, _PATH, _PATH_OR_PATHS, _TEXT, _public
from pneumoscan.data.decode import not_frontal_view, read_file, reading_film
from pneumoscan.data.preprocess import load_image_levels_rgb_and_gray
from pneumoscan.errors import (DamagedModel, InputError, ModelFileChanged, ModelFileGone, check_at_least_one,
                               names_file, one_name, option, warn, words)
from pneumoscan.evaluation.thresholds import check_operating_point
from pneumoscan.inference.batch import predict_probs, sigmoid
from pneumoscan.inference.decoding import Decoded, GuardCues, decoded_file, measured_cues
from pneumoscan.inference.inputs import film_bytes, input_files
from pneumoscan.inference.ood import OODResult, forward_with_features, load_guard
from pneumoscan.inference.prediction import Prediction, screened_rows
from pneumoscan.inference.prevalence import model_prior
from pneumoscan.inference.threshold import (chosen_threshold, interval_resampled, prevalence_adjusted,
                                            threshold_interval)


# Files `predict_chunks` decodes and predicts at a time: enough for every decoding thread of a many-core machine
# (one per core) to have several files per chunk, few enough that rows, progress and Ctrl+C follow within seconds
# (about 2 s on 2 cores) and memory stays small (peak RSS of `predict` on 4,000 224 px films: 0.57 GB at 64,
# 0.75 GB at 256, 1.06 GB at 1,024, 0.42 GB for one film).
CHUNK_SIZE = 256
# what reading the model file raised when it was removed or cannot be read (not ENOMEM, EMFILE, ...: they may pass)
FILE_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EIO,
                       errno.ESTALE, errno.ENXIO, errno.ENODEV})

def _refuse_onnx_path(onnx_path: str | os.PathLike) -> None:
    """InputError: an ONNX export was given for a backend other than onnx, which would not use it."""
    given = words(f"--onnx {onnx_path}", f"onnx_path={os.fspath(onnx_path)!r}")
    raise InputError(f"{given}: only the onnx backend uses it; drop {words('--onnx', '`onnx_path`')} or pass "
                     f"{option('backend', 'onnx')}")


class Predictor:
    """A loaded model plus its operating point; the same object serves the CLI and the web service.

    `backend` defaults to "auto", as every command does: ONNX Runtime on the CPU when it is installed (the model's
    own export beside it when made from the very same file, as the shipped model has, opened without importing
    torch; else the model exported in memory and checked against PyTorch: 0.6-0.9 s), PyTorch on a CUDA GPU or
    without onnxruntime. So a notebook gets the CLI's very numbers; "torch" differs from them by up to about 5e-7 in
    P (float rounding; for the shipped model on 400 train films, bench/results/predictor_default.md), and was slower
    per image there. `model`, the torch model, is loaded when first used (at once unless the export on file serves)."""

    # a notebook makes one: its mistakes name `threshold=2` (the CLI's `--threshold 2`), an argument of the wrong
    # kind is refused before the model is loaded
    @_public("Predictor", model=_MODEL, backend=_TEXT, threshold=_NUMBER.or_none(), target_recall=_NUMBER.or_none(),
             prevalence=_NUMBER.or_none(), batch_size=_INT, onnx_path=_PATH.or_none(), guard=_BOOL)
    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        backend: str = "auto",
        threshold: float | None = None,
        target_recall: float | None = None,
        prevalence: float | None = None,
        batch_size: int = 64,
        onnx_path: str | os.PathLike | None = None,
        guard: bool = True,
    ) -> None:
        from pneumoscan.inference.onnx_backend import export_on_file, resolve_backend

        check_at_least_one(batch_size, "batch_size")  # 0 ended in range()'s ValueError at the first prediction
        check_operating_point(threshold, target_recall, prevalence)  # here, even when no image is readable
        if onnx_path is not None and backend == "torch":  # before the model is read: seconds with torch
            _refuse_onnx_path(onnx_path)
        self.path = resolve_model_path(model)
        # the file as read now: its export, guard and threshold are checked against it, and the torch model, when
        # loaded later (`model`), must be this very file, not one written over it since (`read_unchanged`)
        self.sha256 = file_sha256(self.path)
        self.meta = read_meta(self.path)
        self._model: Any = None
        self._model_lock = threading.Lock()
        # backend: "torch", "onnx" or "auto" (see resolve_backend; an `onnx_path` asks for onnx); `onnx_path` is an
        # export of this artifact to use, else one is built in memory. `self.model` stays the torch model either way.
        self.backend = resolve_backend("onnx" if backend == "auto" and onnx_path is not None else backend)
        # An export on file serves without the torch model. A plugin's model is loaded as before (its package must
        # be installed), and so is every model without an export on file: its load errors come first.
        served = self.backend == "onnx" and not self.meta.model_sources
        exported = export_on_file(self.path, self.meta, onnx_path, artifact_sha256=self.sha256) if served else None
        if exported is None:
            self._load_model()
        try:  # every probability is read against it (the service reports it with each): checked before any is made
            model_prior(self.meta)
        except InputError as err:
            raise InputError(f"{self.path}: {err}") from None
        if onnx_path is not None and self.backend != "onnx":
            _refuse_onnx_path(onnx_path)
        self.batch_size = int(batch_size)  # a numpy int is taken too
        self.prevalence = prevalence
        self.threshold_from, self.target_recall, self.threshold = chosen_threshold(
            self.meta, self.path, threshold, target_recall, prevalence)
        # whether the threshold is the artifact's own (moved with the probabilities when `prevalence` is given)
        self.stored_threshold = self.threshold_from == "model"
        if self.backend == "onnx" and not served:  # a plugin's model: its export on file is looked for once loaded
            exported = export_on_file(self.path, self.meta, onnx_path, artifact_sha256=self.sha256)
        self.onnx = exported if exported is not None else (
            self._export_in_memory(fallback=backend == "auto") if self.backend == "onnx" else None)
        self.guard = load_guard(self.path, self.meta, model_sha256=self.sha256) if guard else None
        self.guard_off = not guard  # guard=False: scoring without one was asked for, so no warning says it
        self._unguarded_said = False  # a model without its guard scores a photo too: said once (`warn_unguarded`)

    def unguarded_warning(self) -> str | None:
        """What scoring with a model that has no chest X-ray guard means, with how to fit one (or why none can be);
        None when it has its guard, or when it was turned off (`guard=False`)."""
        if self.guard is not None or self.guard_off:
            return None
        from pneumoscan.artifact import ARTIFACT_NAME

        model = self.path.parent if self.path.name == ARTIFACT_NAME else self.path  # a run folder as train names it
        none_fits = self.no_guard_fits()
        return (f"{self.path}: this model has no chest X-ray guard, so every film gets a probability, a photo or an "
                f"upside-down film too, instead of being refused; "
                + (none_fits or f"fit one with {self.meta.fit_guard_command(model, self.path.parent)}"))

    def no_guard_fits(self) -> str | None:
        """Why no chest X-ray guard can be fitted to this model (`ood.guard.no_guard_fits`), None when one can; the
        torch model is asked only when loaded: one served from its ONNX export is not read (seconds) for this."""
        from pneumoscan.inference.ood.guard import no_guard_fits

        return no_guard_fits(self.model if self.model_loaded else None)

    def warn_unguarded(self) -> None:
        """Warn, the first time only, that the model has no guard (`unguarded_warning`): called when films are
        first scored by `predict`, `predict_files`, `predict_bytes`, `predict_chunks` and `gradcam`."""
        if self._unguarded_said:
            return
        self._unguarded_said = True
        text = self.unguarded_warning()
        if text is not None:
            warn(text)

    @property
    def model(self) -> Any:
        """The torch model (nn.Module), loaded on first use when the ONNX export on file served without it;
        InputError then when the model file changed since this Predictor read it (its `sha256`). On the CPU with the
        onnx backend, else on `device_for()`'s device (CUDA when present)."""
        if self._model is None:
            self._load_model()
        return self._model

    @property
    def model_loaded(self) -> bool:
        """Whether the torch model is loaded (reading `model` would load it, importing torch: seconds)."""
        return self._model is not None

    def _load_model(self) -> None:
        """Load the torch model once (threads of the service may ask at the same time); ModelFileChanged when the
        model file changed since this Predictor read it, ModelFileGone when it was removed or cannot be read."""
        with self._model_lock:
            if self._model is None:
                try:
                    # on the onnx backend (the way off a full GPU) on the CPU: it serves the export and Grad-CAM
                    self._model, _ = load_artifact(self.path, "cpu" if self.backend == "onnx" else None,
                                                   sha256=self.sha256)
                except ModelFileChanged:
                    raise
                except (OSError, InputError) as err:
                    gone = self._gone(err)
                    if gone is None:
                        raise
                    raise gone from err

    def _gone(self, err: OSError | InputError) -> ModelFileGone | None:
        """ModelFileGone for `err` when it says the model file was removed or cannot be read since this Predictor
        read it (None: another failure, such as a broken PyTorch's OSError, or one that may pass: out of memory, too
        many open files)."""
        if isinstance(err, OSError):
            if not names_file(err, self.path) or err.errno is not None and err.errno not in FILE_GONE:
                return None
            reason = f"{type(err).__name__}: {err.strerror or 'unreadable'}"
        elif self.path.is_file():
            return None
        else:
            reason = "no such file"
        return ModelFileGone(f"{self.path}: removed or unreadable since the service or Predictor loaded it ({reason}); "
                             f"put it back, readable by the user the service runs as, and restart the service (in "
                             f"Python: make a new Predictor)", reason)

    def _export_in_memory(self, *, fallback: bool) -> Any:
        """The ONNX Runtime session of the model exported in memory, when no export on file serves; None, the
        backend then "torch", when `fallback` (--backend auto) keeps prediction on PyTorch
        (`export_in_memory_or_torch`)."""
        from pneumoscan.inference.onnx_backend import export_in_memory_or_torch

        session = export_in_memory_or_torch(self.path, self.model, self.meta, artifact_sha256=self.sha256,
                                            fallback=fallback)
        if session is None:
            self.backend = "torch"
        return session

    @cached_property
    def threshold_ci95(self) -> tuple[float, float] | None:
        """95 % bootstrap interval of the threshold in use, on the scores it was chosen on (validation, or a site's
        films after set-threshold), moved with the probabilities to `prevalence` as the threshold is. None for a
        threshold given by hand, and for a model whose stored scores do not give its stored threshold (none
        stored, unusable ones as in an edited file, no recall recorded, or a threshold set otherwise): its
        predictions are made all the same. Computed on first use, once (`threshold_interval`)."""
        return threshold_interval(self.meta, self.threshold_from, self.target_recall, self.prevalence)

    @cached_property
    def threshold_resampled(self) -> dict[str, Any] | None:
        """What the bootstrap of `threshold_ci95` drew (`resampled_unit`: patients or films, how many), with `known`:
        whether the model stores the patients of its scored films; None when there is no interval."""
        return None if self.threshold_ci95 is None else interval_resampled(self.meta)

    @_public(prob=_NUMBER)
    def borderline(self, prob: float) -> bool | None:
        """Whether `prob` lies within the threshold's interval (ends included); None when there is no interval."""
        interval = self.threshold_ci95
        return None if interval is None else interval[0] <= prob <= interval[1]

    @property
    def assumed_prevalence(self) -> float:
        """The pneumonia prevalence the probabilities assume: `prevalence` when given, else the model's prior."""
        return self.prevalence if self.prevalence is not None else model_prior(self.meta)

    def operating_point(self) -> dict[str, object]:
        """The threshold in use, its 95 % interval (`threshold_ci95`), where it came from (the model's stored one, a
        `target_recall`, a `threshold`), the scores it was chosen on, and the prevalence the probabilities assume."""
        chosen_on = None if self.threshold_from == "threshold" else (
            "local" if self.meta.threshold_source else "validation")
        interval = self.threshold_ci95
        return {"threshold": self.threshold, "threshold_ci95": None if interval is None else list(interval),
                "threshold_from": self.threshold_from, "target_recall": self.target_recall, "chosen_on": chosen_on,
                "prevalence": self.assumed_prevalence,
                "prevalence_from": "model_prior" if self.prevalence is None else "prevalence"}

    @property
    def hooks_shared_model(self) -> bool:
        """Whether screening registers hooks on the shared torch model (then concurrent calls must be serialised)."""
        return self.guard is not None and (self.onnx is None or not self.onnx.has_features)

    @property
    def size(self) -> int:
        return self.meta.image_size

    def __repr__(self) -> str:
        """What a notebook shows for it: the model file, its architecture and input size, the backend and the
        operating point (not the threshold's interval, a bootstrap computed on first use)."""
        return (f"Predictor(path={self.path!r}, model_name={self.meta.model_name!r}, size={self.size}, "
                f"backend={self.backend!r}, threshold={self.threshold!r}, threshold_from={self.threshold_from!r}, "
                f"target_recall={self.target_recall!r}, prevalence={self.prevalence!r}, "
                f"guard={self.guard is not None})")

    def _adjust(self, probs: np.ndarray) -> np.ndarray:
        """`probs` moved to this predictor's `prevalence` (`prevalence_adjusted`)."""
        return prevalence_adjusted(probs, self.meta, self.prevalence)

    def predict_images(self, images: np.ndarray) -> np.ndarray:
        """P(PNEUMONIA) for preprocessed uint8 images (N, S, S), prevalence-adjusted when asked (no guard); InputError
        for other arrays."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (self.size, self.size):
            raise InputError(f"predict_images takes uint8 images (N, {self.size}, {self.size}) as load_image(path, "
                             f"{self.size}) gives them, stacked; got {images.dtype} {images.shape}; for one film of "
                             f"any size, use predict(image)")
        return self._predict(images, with_features=False)[0]

    @_public(image=_FILM)
    def predict(self, image: str | os.PathLike | bytes | np.ndarray | Any) -> Prediction:
        """One film, decoded and screened by the guard as `predict_files` does: a path, a file's bytes, a PIL image
        (turned upright by its EXIF orientation, as a file is), a non-empty array of any size (H, W) or (H, W, 1) of uint8 or uint16 pixels or (H, W, 3) of uint8 (a float array is refused, saying how to convert it), or a pydicom Dataset (read as its
        file is, its header's photometric interpretation and windows applied: not as its `pixel_array`). InputError when
        it is no usable image (`predict_files` gives that as the row's `error` instead); a film the guard refuses comes
        back unscored. An in-memory image is screened as the PNG file of its pixels is (`encoded_png`; a PIL image of a
        mode PNG cannot hold, such as I or F, as its TIFF file): the dithered
        rule measures JPEG and 8-bit PNG, TIFF and BMP files (save those mostly near black or white), so a dithered
        JPEG's pixels are refused as dithered; the two-tone and posterised rules measure JPEG files only, so a
        black-and-white or posterised JPEG is refused by them from its path or bytes, not as decoded pixels. A JPEG
        at least twice the model's input size is decoded at reduced size from its path or bytes (draft mode, as by
        every command) and pixels of any other origin shrink by the same factor (`fit_decoded`), so its decoded
        pixels given as an array score nearly alike (shipped model, 200 sample train films made 600 to 1,500 px:
        |dP| at most 0.015, median 7e-5)."""
        if isinstance(image, (str, os.PathLike)):
            if Path(image).is_dir():
                raise InputError(f"{os.fspath(image)}: a folder; predict takes one film, predict_files([folder]) "
                                 f"predicts every film in it")
            (prediction,) = self.predict_files([image])
            if prediction.error is not None:
                raise InputError(prediction.error)
            return prediction
        return self.predict_bytes(*film_bytes(image))

    def _predict(self, images: np.ndarray, with_features: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities, and the guard's penultimate features from the same forward pass when asked."""
        if self.onnx is not None:  # mirror-averaging is in the graph
            probs, features = self.onnx.predict_with_features(images, batch_size=self.batch_size)
        elif with_features:
            logits, features = forward_with_features(self.model, images, self.meta.preprocessing,
                                                     batch_size=self.batch_size, tta=self.meta.tta)
            probs = sigmoid(logits)
        else:
            probs, features = predict_probs(self.model, images, self.meta.preprocessing,
                                            batch_size=self.batch_size, tta=self.meta.tta), None
        bad = int(np.count_nonzero(~np.isfinite(probs)))
        if bad:  # NaN >= threshold is False: such an image would be called NORMAL
            raise DamagedModel(f"{self.path}: the model gave no probability (NaN) for {bad} of {len(probs)} images, so "
                             f"its weights are damaged; restore the model file or train it again")
        return self._adjust(probs), features

    def label_for(self, prob: float) -> str:
        """The class name P(pneumonia) = `prob` gets at this predictor's threshold."""
        return self.meta.class_names[int(prob >= self.threshold)]

    def results(self, names: list[str], images: np.ndarray, raw: Sequence[bytes | bytearray] | None = None, *,
                colours: list[float] | None = None, levels: list[int] | None = None,
                tones: list[float] | None = None, small: list[str | None] | None = None,
                views: list[str | None] | None = None, dithers: list[float] | None = None,
                peaks: list[float] | None = None) -> list[Prediction]:
        """Predictions for decoded images, screened by the guard: colourfulness, grey levels (see
        `load_image_with_levels`), two-tone shares, dither energies and peak excesses (`jpeg_cues`) as given, else measured on the `raw`
        bytes as `decode` measures them (decoding a file again only for its grey levels); `small` the files'
        `size_warning`s and `views` their `not_frontal_view`s, likewise (from their headers).

        Inputs the guard rejects get no probability and no label; so, with a guard, does a DICOM whose View
        Position says it is no frontal film (refused_by "view").
        """
        cues = GuardCues(colours, levels, tones, dithers, peaks)
        if raw is not None:
            cues, small = measured_cues(names, raw, cues, small, size=self.size, guarded=self.guard is not None)
            if views is None and self.guard is not None:
                views = []
                for name, data in zip(names, raw):
                    with reading_film(one_name(name), data):
                        views.append(not_frontal_view(data))
        if small is None:
            small = [None] * len(names)
        if views is None or self.guard is None:
            views = [None] * len(names)
        probs, verdicts = self._screen(images, cues)
        return screened_rows(names, probs, verdicts, small, views, threshold=self.threshold,
                             prevalence=self.assumed_prevalence, label_for=self.label_for, borderline=self.borderline)

    def decoded_results(self, names: list[str], files: Sequence[Decoded]) -> list[Prediction]:
        """`results` for files `decode` read: their images, the guard's cues and their size warnings."""
        return self.results(names, np.stack([f.image for f in files]), colours=[f.colour for f in files],
                            levels=[f.levels for f in files], tones=[f.tone for f in files],
                            small=[f.small for f in files], views=[f.view for f in files],
                            dithers=[f.dither for f in files], peaks=[f.peaks for f in files])

    def screen(self, images: np.ndarray, colours: list[float] | None = None, levels: list[int] | None = None,
               tones: list[float] | None = None, dithers: list[float] | None = None,
               peaks: list[float] | None = None, *, progress: bool = False) -> tuple[np.ndarray, list[OODResult | None]]:
        """P(PNEUMONIA) for preprocessed images (N, S, S) and the guard's verdict on each (None without a guard);
        `colours`, `levels`, `tones`, `dithers` and `peaks` are the files' colourfulness, grey levels, two-tone
        shares, dither energies and peak excesses, when known.
        With `progress`, a 'scoring' bar on a terminal counts the images, scored a few batches at a time (the same
        batches, so the same answers; the guard's image statistics then take the memory of those few alone)."""
        step = self.batch_size * 4
        cues = GuardCues(colours, levels, tones, dithers, peaks)
        if not progress or len(images) <= step:
            return self._screen(images, cues)
        from pneumoscan.progress import progress_bar

        probs, verdicts = [], []
        with progress_bar(total=len(images), desc="scoring", unit="img") as bar:
            for start in range(0, len(images), step):
                part = slice(start, start + step)
                p, v = self._screen(images[part], cues.part(part))
                probs.append(p)
                verdicts += v
                bar.update(len(p))
        return np.concatenate(probs), verdicts

    def _screen(self, images: np.ndarray, cues: GuardCues) -> tuple[np.ndarray, list[OODResult | None]]:
        probs, features = self._predict(images, with_features=self.guard is not None)
        if self.guard is None:
            return probs, [None] * len(images)
        if features is not None:
            return probs, list(self.guard.check(images, features=features, **cues._asdict()))
        # an ONNX export without the features output
        return probs, list(self.guard.check(images, model=self.model, **cues._asdict()))

    @_public(data=_BYTES, name=_TEXT)
    def predict_bytes(self, data: bytes, name: str = "<upload>") -> Prediction:
        """Predict one in-memory file; raises InputError when it is not a usable image."""
        self.warn_unguarded()
        return self.decoded_results([name], [self.decode(data, name)])[0]

    @_public(paths=_PATH_OR_PATHS, workers=_INT.or_none())
    def predict_files(self, paths: Sequence[str | os.PathLike], workers: int | None = None) -> list[Prediction]:
        """Predict files and folders (`workers` decoding threads, default one per core); unreadable files (and,
        among other inputs, folders without images) come back with `error` set, the rest are still predicted. All
        in one list: `predict_chunks` to stream them."""
        if isinstance(paths, (str, os.PathLike)):  # a str is a sequence too: of one-letter "paths"
            raise InputError(f"predict_files takes a list of paths, not one path; predict_files([{os.fspath(paths)!r}]), "
                             f"or predict(path) for one film")
        return [p for chunk in self.predict_chunks(input_files(list(paths)), workers=workers) for p in chunk]

    @_public(workers=_INT.or_none(), chunk_size=_INT.or_none())
    def predict_chunks(self, files: Sequence[tuple[Path, str | None]], workers: int | None = None,
                       chunk_size: int | None = None) -> Iterator[list[Prediction]]:
        """The predictions for `input_files(...)`, `chunk_size` files (default CHUNK_SIZE) at a time, in input
        order: each chunk is decoded (in parallel by `workers` threads, default one per core), predicted and handed
        back before the next is read, so memory is bounded by one chunk whatever the number of files. Files with an
        error come back with `error` set."""
        for name, count in (("workers", workers), ("chunk_size", chunk_size)):
            if count is not None:  # 0 was taken as the default, -1 ended in ThreadPoolExecutor's ValueError
                check_at_least_one(count, name)
        self.warn_unguarded()  # `files` read once into a list: _chunks slices it (a generator has no len())
        return self._chunks(list(files), workers or os.cpu_count() or 1, chunk_size or CHUNK_SIZE)

    def _chunks(self, files: Sequence[tuple[Path, str | None]], workers: int,
                size: int) -> Iterator[list[Prediction]]:
        """`predict_chunks`' work, once its arguments are checked."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(files), size):
                part = files[start : start + size]
                yield self._chunk_results([path for path, _ in part], list(pool.map(self._decode, part)))

    def _decode(self, item: tuple[Path, str | None]) -> Decoded | str:
        """One file of `input_files` as `decode` reads it, or why it cannot be predicted."""
        path, error = item
        if error is not None:
            return error
        try:
            return self.decode(read_file(path, one_name(str(path))), str(path))
        except InputError as err:
            return str(err)

    def decode(self, data: bytes | bytearray, name: str) -> Decoded:
        """A file's bytes -> the model's input image, the guard's cues of the file and its size warning; InputError
        (naming the file `name`) when it is no usable image, `DecodeOutOfMemory` when reading it runs out of memory."""
        with reading_film(one_name(name), data):
            image, levels, rgb, gray, shown, deep = load_image_levels_rgb_and_gray(data, self.size, name=name)
            return self.decoded(data, image, levels, rgb, gray=gray, deep=deep)._replace(stretched=shown is not None,
                                                                                         shown=shown)

    def decoded(self, data: bytes | bytearray, image: np.ndarray, levels: int, rgb: np.ndarray | None, *,
                gray: np.ndarray | None = None, deep: bool | None = None) -> Decoded:
        """The `Decoded` of a file whose bytes `data` are decoded already (`image`, `levels` and `rgb` as
        `load_image_levels_and_rgb` gives them; `gray`, its decoded grey pixels, spares a lossless file a second
        decode for its dither energy and gives the film's proportions, `aspect`): its guard cues (`file_cues`), size,
        size warning and, with a guard, its DICOM view when not frontal (`decoded_file`); `deep`: `Film.deep` of
        `gray`."""
        return decoded_file(data, image, levels, rgb, gray=gray, deep=deep, guarded=self.guard is not None)

    def _chunk_results(self, files: list[Path], decoded: list[Decoded | str]) -> list[Prediction]:
        """Predictions for decoded files, in order; the strings of `decoded` are the errors of unreadable ones."""
        good = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
        results: list[Prediction] = [Prediction(str(f), None, None, self.threshold, error=d if isinstance(d, str) else None,
                                                prevalence=self.assumed_prevalence) for f, d in zip(files, decoded)]
        if good:
            done = self.decoded_results([str(files[i]) for i in good], [decoded[i] for i in good])
            for i, prediction in zip(good, done):
                results[i] = prediction
        return results
