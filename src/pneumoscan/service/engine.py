"""The service's model: decode + predict + out-of-distribution screening (thread-safe), Grad-CAM, and the model's
description (`GET /model`)."""
from __future__ import annotations

import copy
import errno
import importlib
import importlib.util
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path, PureWindowsPath
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.artifact import ArtifactMeta, is_shipped
from pneumoscan.errors import (DamagedModel, InputError, ModelFileChanged, ModelFileGone, PneumoscanError,
                              first_line, gpu_out_of_memory, host_out_of_memory, names_file, out_of_memory_text)
from pneumoscan.inference.decoding import Decoded
from pneumoscan.inference.prediction import Prediction
from pneumoscan.inference.predictor import Predictor
from pneumoscan.service.settings import MB, Settings

if TYPE_CHECKING:
    from torch import nn

GRADCAM_MODULE = "pneumoscan.explain.gradcam"
CAM_RETRY_S = 30.0  # a load of Grad-CAM's model that ran out of memory is tried again after this long
log = logging.getLogger("pneumoscan.service")


def served_source(source: dict[str, object]) -> dict[str, object]:
    """`set-threshold`'s record as `GET /model` shows it: no metrics, and no server path (the local data's folder
    and the model it was chosen for by their names only)."""
    shown = {k: v for k, v in source.items() if k not in ("metrics", "data_resolved")}
    for key in ("data", "model"):
        if isinstance(shown.get(key), str):
            shown[key] = _last_name(shown[key])
    resolved = source.get("data_resolved")
    if isinstance(resolved, str) and _last_name(resolved) and "data" in shown:  # --data . or .. has no name of its own
        shown["data"] = _last_name(resolved)
    return shown


def _last_name(path: str) -> str:
    """A path's last name, split at / and \\ whichever system wrote it (a copy made on Windows, served on Linux)."""
    return PureWindowsPath(path).name


def describe(meta: ArtifactMeta) -> dict[str, object]:
    """JSON-friendly description of a model artifact for `GET /model`: input size, normalisation, classes, threshold."""
    return {
        "name": meta.model_name, "version": meta.version, "input_size": meta.image_size,
        "normalization": asdict(meta.preprocessing),
        "class_names": meta.class_names,
        "threshold": meta.threshold, "target_recall": meta.target_recall, "tta": meta.tta,
        "threshold_source": served_source(meta.threshold_source),
        "val_metrics": meta.val_metrics, "test_metrics": meta.test_metrics,
    }


class ExplainUnavailable(PneumoscanError):
    """Grad-CAM cannot be produced by this installation or for this model; `retry_s`: the seconds left of the back-off
    after a load that ran out of memory (None: for good), read with the reason."""

    def __init__(self, message: str, retry_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_s = retry_s


GRADCAM_FUNCTIONS = ("cam_layers", "gradcam_for_image", "overlay_png", "unmapped_members")  # what the engine calls in it


def gradcam_module() -> ModuleType | None:
    """`pneumoscan.explain.gradcam` when installed with the functions the engine calls, else None (other import
    errors propagate)."""
    try:
        module = importlib.import_module(GRADCAM_MODULE)
    except ModuleNotFoundError as err:
        if err.name in (GRADCAM_MODULE, "pneumoscan.explain"):
            return None
        raise
    return module if all(hasattr(module, name) for name in GRADCAM_FUNCTIONS) else None


def no_feature_map(err: Exception) -> bool:
    """Whether `err` is Grad-CAM's `NoCamLayer`: the model has no feature map to draw (an mlp), by its design."""
    module = sys.modules.get(GRADCAM_MODULE)  # loaded whenever it raised one
    return module is not None and isinstance(err, getattr(module, "NoCamLayer", ()))


def torch_requirement() -> str:
    """The PyTorch pneumoscan is installed with ('torch==2.13.0'), as its package metadata pins it."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        pins = requires("pneumoscan") or []
    except PackageNotFoundError:  # run from a source tree without being installed
        pins = []
    return next((pin for pin in pins if re.split(r"[<>=!~;\[ ]", pin, maxsplit=1)[0] == "torch"), "torch")


def no_torch() -> str:
    """Why heatmaps are off when PyTorch is not installed, with the command that installs it."""
    return (f"Grad-CAM heatmaps need PyTorch, which is not installed; predictions are not affected. Install it "
            f"(pip install '{torch_requirement()}' -i https://download.pytorch.org/whl/cpu for the CPU build) and "
            f"restart the service for heatmaps")


# one folder of a path: words that spaces may join ('My Venv', 'Program Files (x86)'), with any punctuation but
# quotes at their start ("O'Brien", 'venv-3.12,old'); a folder is known by the separator after it. A word that ends
# in , ; or : ends the path there ('x.so, see docs/service.md' keeps its text after the comma)
_WORD = r"[^\s/\\'\"][^\s/\\\"]*"
_SEG = rf"(?:[^\s/\\'\"](?:[^\s/\\\"]*[^\s/\\\",;:])? +)*{_WORD}"
# an absolute path's folders, kept out of answers: POSIX ('/opt/venv/lib/'), home ('~/venvs/'), Windows
# ('C:\\Program Files\\'), UNC ('\\\\server\\share\\'); the file's name after them stays. A URL's '//' and path are
# no server's folders and stay whole ('https://pytorch.org/docs/...'), a file URL's are cut ('file:///opt/...')
_FOLDERS = re.compile(rf"(?<![\w.~-])(?!(?<=:)//)(?<!:/)(?:~[\w.-]*)?/(?:{_SEG}/)+(?={_SEG})"
                      rf"|(?:\b[A-Za-z]:[\\/]|(?<![\w\\])\\\\)(?:{_SEG}[\\/])+(?={_SEG})")
# a quoted path, as in Windows' DLL errors ('Error loading "C:\\Program Files\\...\\c10.dll"'): its file's name stays;
# it ends at its quote followed by no letter, so an apostrophe in a folder's name does not end it ("/home/O'Brien/")
_QUOTED = re.compile(r"""(["'])((?:[A-Za-z]:[\\/]|\\\\|~[\w.-]*/|/)[^\n]*?)\1(?!\w)""")


def _quoted_name(match: re.Match[str]) -> str:
    """A quoted path cut to its last part, in its quotes."""
    parts = [part for part in re.split(r"[\\/]", match[2]) if part]
    return f"{match[1]}{parts[-1] if parts else ''}{match[1]}"


def without_paths(text: str, model_path: Path) -> str:
    """`text` for an answer: the model file named as 'the model file' and other absolute paths cut to their file's
    name, so that no answer tells a client how the server's folders are laid out (the log has the paths)."""
    for shown in sorted({str(model_path), str(model_path.resolve())}, key=len, reverse=True):
        text = text.replace(shown, "the model file")
    return _FOLDERS.sub("", _QUOTED.sub(_quoted_name, text))


WINDOWS_NO_MEMORY = (8, 14, 1455)  # ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY, ERROR_COMMITMENT_LIMIT (paging file)


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` says memory ran short (the host's, or the GPU's): a failure that may pass, unlike a changed or
    damaged model file or a missing PyTorch."""
    if isinstance(err, MemoryError) or gpu_out_of_memory(err):
        return True
    text = str(err).lower()  # a torch older than OutOfMemoryError, the CPU allocator's RuntimeError
    if isinstance(err, RuntimeError):
        return "out of memory" in text or "can't allocate memory" in text
    # importing torch: mapping its libraries failed for want of memory (not 'failed to map segment' alone: ambiguous);
    # on Windows "[WinError 1455] The paging file is too small" (errno EINVAL) or not enough memory (8, 14)
    return isinstance(err, (ImportError, OSError)) and (
        getattr(err, "errno", None) == errno.ENOMEM or getattr(err, "winerror", None) in WINDOWS_NO_MEMORY
        or "cannot allocate memory" in text or "paging file is too small" in text)


def torch_half_loaded() -> bool:
    """Whether an `import torch` failed after its native library (`torch._C`) had loaded: importing it again in this
    process then fails ('partially initialized module'), and removing torch's modules to start afresh is worse (a
    SystemError from a half-initialised extension), so only a restart loads it."""
    return "torch._C" in sys.modules and "torch" not in sys.modules


def too_many_files(err: BaseException) -> bool:
    """Whether `err` says the process or the host had too many files open: like memory, a shortage that may pass.
    Loading torch's libraries says it in words only (an ImportError or OSError without errno)."""
    return isinstance(err, (ImportError, OSError)) and (
        getattr(err, "errno", None) in (errno.EMFILE, errno.ENFILE) or "too many open files" in str(err).lower())


def _unreadable(reason: str) -> str:
    """Why heatmaps are off when the model file could not be read again for `reason` (no path in it)."""
    return (f"Grad-CAM heatmaps need the model file read again, and it could not be read ({reason}); predictions "
            f"are not affected. Put the file back, readable by the user the service runs as (the service's log "
            f"names it), and restart the service for heatmaps")


def cam_error(err: Exception, model_path: Path) -> str:
    """Why heatmaps are off after loading Grad-CAM's model from `model_path` (or finding its layers) raised `err`, in
    the words of an answer: no server paths (the caller logs `err` whole). Permanent unless memory or file handles ran
    short (`out_of_memory`, `too_many_files`; the engine tries again after CAM_RETRY_S): loaded again by every heatmap,
    a damaged model file
    would hold an inference slot for seconds each time and end in a 500 that loses the prediction too."""
    if isinstance(err, ModuleNotFoundError) and err.name == "torch":  # removed since start-up
        return no_torch()
    if torch_half_loaded():  # whatever failed, and however it may pass: no retry can load it
        return (f"Grad-CAM heatmaps need PyTorch, and loading it failed part-way ({type(err).__name__}: "
                f"{without_paths(first_line(err), model_path)}), which a running service cannot undo; predictions are "
                f"not affected. Restart the service for heatmaps"
                + (" once more memory is free" if out_of_memory(err) else ""))
    if out_of_memory(err):
        return (f"Grad-CAM's torch model could not be loaded for lack of memory ({type(err).__name__}: "
                f"{without_paths(first_line(err), model_path)}); predictions are not affected")
    if too_many_files(err):
        return (f"Grad-CAM's torch model could not be loaded: the service had too many files open "
                f"({type(err).__name__}: {err.strerror or 'too many open files'}); predictions are not affected")
    if isinstance(err, ModelFileGone):  # removed or unreadable since start-up (`Predictor._load_model`)
        return _unreadable(err.reason)
    if isinstance(err, ModelFileChanged):  # a new `train` into its folder: its message names the file
        return ("Grad-CAM heatmaps need the model file read again, and it changed since the service started (a new "
                "`train` into its folder does that), so its weights are not those predicting here; predictions are "
                "not affected. Restart the service for heatmaps (its log names the file)")
    if isinstance(err, InputError):  # a model Grad-CAM cannot explain
        return without_paths(str(err), model_path)
    if isinstance(err, OSError) and names_file(err, model_path):  # unreadable since start-up, or removed as it was read
        return _unreadable(f"{type(err).__name__}: {err.strerror or without_paths(first_line(err), model_path)}")
    if isinstance(err, (ImportError, OSError)):  # PyTorch installed but broken
        return (f"Grad-CAM heatmaps need PyTorch, which could not be loaded ({type(err).__name__}: "
                f"{without_paths(first_line(err), model_path)}); predictions are not affected. Reinstall torch and "
                f"restart the service for heatmaps")
    return (f"Grad-CAM's torch model could not be loaded ({type(err).__name__}: "
            f"{without_paths(first_line(err), model_path)}); predictions are not affected. Heatmaps stay off until "
            f"the service is restarted")


def model_fault(err: ModelFileChanged | DamagedModel) -> str:
    """What is wrong with the model file and what to do, without its path (the log line names it): for an answer to
    a request, or `/ready`, that the model file failed."""
    if isinstance(err, ModelFileGone):  # an --onnx export without the guard's features loads the torch model
        return (f"the model file was removed or cannot be read since the service started ({err.reason}); put it "
                f"back, readable by the user the service runs as, and restart the service")
    if isinstance(err, ModelFileChanged):
        return ("the model file changed since the service started (a new `train` into its folder does that), so its "
                "weights are not those predicting here; restart the service")
    return "the model gave no probability (NaN): its weights are damaged; restore the model file and restart"


BUSY_RETRY_S = 2  # Retry-After of a request, or /ready, the GPU or the host ran short for


def host_short(err: BaseException) -> bool:
    """Whether `err` is the host short of memory or open files (a MemoryError or torch's CPU allocator failing,
    `host_out_of_memory`; an OSError's ENOMEM; or `too_many_files`: EMFILE, ENFILE, or the words torch's loaders use):
    a shortage that passes, answered 503 with Retry-After. A film's decoding that ran out of memory is a
    DecodeOutOfMemory, which the routes answer by whether other requests hold memory."""
    return (host_out_of_memory(err) or (isinstance(err, OSError) and err.errno == errno.ENOMEM)
            or too_many_files(err))


GPU_WAYS = ("free the GPU (`nvidia-smi` lists the processes holding it)", "serve fewer requests at once (--slots, 2 "
            "by default)", "serve with --backend onnx (ONNX Runtime, on the CPU, and Grad-CAM's model too)")


def log_gpu_full(start: str, err: BaseException, last_way: str = "") -> None:
    """Log one line, `start` then the CLI's words and the service's ways out (`last_way` added to the last), for work
    the GPU ran out of memory in, and free the memory torch cached, so the next request has it."""
    log.error("%s%s", start, out_of_memory_text(err, [*GPU_WAYS[:-1], GPU_WAYS[-1] + last_way]))
    free_gpu_cache()


def free_gpu_cache() -> None:
    """Give back the GPU memory torch holds cached (after a GPU out-of-memory), so the next request has it."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def torch_installed() -> bool:
    """Whether PyTorch can be imported, found without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except ValueError:  # a module object without a spec under sys.modules["torch"] (None: imports of it fail)
        return False


MAX_ASPECT = 8.0  # a heatmap picture is at most this many times longer than it is wide


def in_proportion(image: np.ndarray, aspect: float | None) -> np.ndarray:
    """The model's input `image` (S, S), the whole film stretched to a square, stretched back to the film's width /
    height `aspect` (kept within 1/MAX_ASPECT to MAX_ASPECT), its short side S: drawn square, the heatmap picture
    that stands in for a film the browser cannot show (DICOM, TIFF), and the one printed beside the film, showed a
    wide or tall film squeezed. The image as it is for a square film, or when `aspect` is not known."""
    if aspect is None or not math.isfinite(aspect) or aspect <= 0:
        return image
    aspect = min(max(aspect, 1 / MAX_ASPECT), MAX_ASPECT)
    side = image.shape[0]
    width, height = (round(side * aspect), side) if aspect >= 1 else (side, round(side / aspect))
    if (height, width) == image.shape:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


class Engine:
    """One Predictor shared by all requests.

    Inference is thread-safe: ONNX Runtime sessions allow concurrent `run` calls, and the torch
    model runs in eval mode under `inference_mode` without mutating state. Grad-CAM needs hooks and
    gradients, so it draws with its own copy of the model behind a lock; only start-up, before any request, finds its
    target layers on the shared one (hooks it once) when the torch model is loaded then.
    The out-of-distribution guard needs the penultimate features. ONNX exports return them as a
    second output, so requests run concurrently; on the torch backend (or an older export) they come
    from a forward hook on the shared model, and registering hooks while another thread runs a pass
    is not safe, so then `results` (prediction and screening) runs one request at a time. The guard's
    cues that read the upload's bytes (colourfulness, two-tone share, dither energy and peak excess: a full-size JPEG
    decode) are measured in `decode`, outside that lock, so they never wait for another request.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.predictor = Predictor(settings.model, backend=settings.backend, threshold=settings.threshold,
                                   target_recall=settings.target_recall, prevalence=settings.prevalence,
                                   onnx_path=settings.onnx_path)
        _ = self.predictor.threshold_ci95  # computed now, not on the first upload
        # The torch model (Grad-CAM's) is not loaded here when the ONNX export on file serves: it is loaded by the
        # first heatmap, in its worker thread (see `_cam_problem`), so the service starts and predicts without torch.
        self.model_sha256 = self.predictor.sha256
        self.shipped = is_shipped(self.predictor.path)
        self._torch_at_start = self.predictor.model_loaded  # else the first heatmap loads it (not the event loop)
        self._explain_lock = threading.Lock()
        self._warm_lock = threading.Lock()
        self._warming: threading.Thread | None = None
        self.warm_starts = 0  # loads of Grad-CAM's model `warm_explain` started: one that ended meanwhile changed it
        self._explain_model: nn.Module | None = None
        self._cam_error: str | None = None  # why Grad-CAM cannot explain the model, once known ('' = it can)
        self._cam_retry_at: float | None = None  # when a load that ran out of memory is tried again (time.monotonic)
        self._cam_retry_utc = ""  # that time for people: 12:34:56 UTC
        self._cam_layers: list[str] = []  # its target layers, found with `_cam_error`
        self._unmapped: list[str] = []  # the members those layers leave out (`unmapped_members`), found with them
        self._state_lock = threading.Lock()  # `_cam_error` and `_cam_retry_at` change, and are read, together
        self._screen_lock = threading.Lock()
        if self._torch_at_start and (module := gradcam_module()) is not None:
            # its layers found now (tens of ms), not by a GET /model on the event loop; on the shared model, as no
            # request runs yet: the hooked copy (the model's size again, on its device) waits for the first heatmap
            self._cam_problem(module, copy=False)

    @property
    def meta(self) -> ArtifactMeta:
        return self.predictor.meta

    def decode(self, data: bytes | bytearray, name: str) -> Decoded:
        """Upload bytes -> the model's input image and the guard's cues of the file (`Predictor.decode`);
        InputError when undecodable."""
        return self.predictor.decode(data, name)

    @property
    def guarded(self) -> bool:
        return self.predictor.guard is not None

    def results(self, uploads: Sequence[Decoded]) -> list[Prediction]:
        """Prediction per upload (from `decode`), screened by the guard when there is one.

        Inputs the guard rejects come back with `in_distribution=False`, `ood_reason` set and no
        probability or label. Names are not passed on: results are matched to uploads by position.
        """
        names = [f"upload {i}" for i in range(len(uploads))]
        if not self.predictor.hooks_shared_model:
            return self.predictor.decoded_results(names, uploads)
        with self._screen_lock:
            return self.predictor.decoded_results(names, uploads)

    def self_test(self) -> None:
        """Score a plain grey image through `results` as an upload would be (the guard too); RuntimeError when
        the answer is not a probability in 0..1 or the guard's refusal."""
        size = self.predictor.size
        (result,) = self.results([Decoded(np.full((size, size), 128, np.uint8), 256, 0.0, 0.0)])
        refused = result.in_distribution is False and result.probability is None
        if not (refused or (result.probability is not None and 0.0 <= result.probability <= 1.0)):
            raise RuntimeError(f"the model scored a grey test image {result.probability}, not a probability")

    def explain_available(self) -> bool:
        """Whether ?explain=true can give a heatmap. Until the torch model is loaded (the first heatmap loads it, or
        the start-up when it loaded torch) this is whether Grad-CAM and PyTorch are installed: found without importing
        torch, and without the lock a loading heatmap holds (the event loop asks). Once it is loaded, whether Grad-CAM
        can explain the model; after a load that ran out of memory, whether its back-off is over (the next heatmap
        tries again). Never loads or searches the model itself."""
        module = gradcam_module()
        if module is None:
            return False
        if self._retry_due():  # the next heatmap loads it again, in its worker thread
            return True
        error = self._cam_error
        if error:  # known: `_cam_problem` would load it again here, on the event loop, were the back-off over by now
            return False
        if error is None:  # not loaded yet (a model loaded at start-up was explained then): the first heatmap loads it
            return torch_installed()
        return True

    def warm_explain(self) -> None:
        """Load Grad-CAM's torch model in a background thread (once, or again once a load that ran out of memory may
        be tried again), when it is not loaded yet: the page was opened (its script asks, POST /warm-up), so a heatmap
        is asked for soon, and it would otherwise wait seconds for PyTorch to load. Predictions go on meanwhile; a
        heatmap asked for before it is done waits for it."""
        with self._warm_lock:
            if self.warming or not self._cam_due(copy=True):
                return
            if self._torch_missing(self._cam_error):
                return  # `explain_problem` gives the install advice; a load would only fail and replace it
            module = gradcam_module()
            if module is None:
                return
            self._warming = threading.Thread(target=self._warm, args=(module,), name="pneumoscan-gradcam-load",
                                             daemon=True)  # never holds up a stop
            self._warming.start()
            self.warm_starts += 1

    @property
    def warming(self) -> bool:
        """Whether `warm_explain`'s thread is loading Grad-CAM's torch model now (memory a request does not hold)."""
        return self._warming is not None and self._warming.is_alive()

    def _warm(self, module: ModuleType) -> None:
        self._cam_problem(module)  # a failure becomes `_cam_error`, logged there

    @property
    def explain_loaded(self) -> bool:
        """Whether Grad-CAM's torch model is ready (False: the next heatmap first loads PyTorch, a few seconds)."""
        return self._cam_error == ""

    @property
    def explain_problem(self) -> str | None:
        """Why heatmaps are not available: PyTorch is not installed, or what the first heatmap found, with when it is
        tried again if memory ran short (None when they are, or not yet known)."""
        return self.explain_state()[0]

    def explain_state(self) -> tuple[str | None, int | None]:
        """`explain_problem`, and the seconds until a load of Grad-CAM's model that ran out of memory is tried again
        (0: the next heatmap does; None when none is to be), from one reading of the state a loading heatmap may
        change: read apart, a load that succeeded between them gave its old problem without a retry time (a 501, for
        good)."""
        return self._shown_state(*self._state())

    def explain_refusal(self) -> tuple[str | None, int | None] | None:
        """Why ?explain=true is refused before its upload is read, as `explain_state` gives it (the problem, and the
        seconds of its back-off for a 503, else None for a 501); None when a heatmap may be drawn: Grad-CAM is
        available (`explain_available`), or its model was loaded since that was asked."""
        if self.explain_available():
            return None
        retry_at, error = self._state()
        return None if error == "" else self._shown_state(retry_at, error)

    def _state(self) -> tuple[float | None, str | None]:
        """`_cam_retry_at` and `_cam_error`, read together."""
        with self._state_lock:  # held only to copy two values: never for a load
            return self._cam_retry_at, self._cam_error

    def _shown_state(self, retry_at: float | None, error: str | None) -> tuple[str | None, int | None]:
        """`explain_state` of the state `_state` read."""
        if self._torch_missing(error):
            return no_torch(), None
        if error and retry_at is not None:
            left = math.ceil(retry_at - time.monotonic())
            return error + (f". Heatmaps will be tried again in {left} s, at {self._cam_retry_utc}" if left > 0
                            else ". The next heatmap asked for tries again"), max(0, left)
        return error or None, None

    def _torch_missing(self, error: str | None) -> bool:
        """Whether heatmaps wait for a PyTorch that is not installed: no load tried yet (`error` None), none at
        start-up, and none to import."""
        return error is None and not self._torch_at_start and not torch_installed()

    def _retry_due(self) -> bool:
        """Whether a load of Grad-CAM's model that ran out of memory is to be tried again now."""
        retry_at = self._cam_retry_at
        return retry_at is not None and time.monotonic() >= retry_at

    def _explain_copy(self) -> nn.Module:
        """The model copy Grad-CAM hooks into (made on first use); call with `_explain_lock` held."""
        if self._explain_model is None:
            self._explain_model = copy.deepcopy(self.predictor.model).eval()
        return self._explain_model

    def _cam_due(self, copy: bool) -> bool:
        """Whether `_cam_problem` has work to do: the layers not found yet, a retry due, or (`copy`) their copy of a
        model whose layers start-up found to make."""
        error = self._cam_error
        return error is None or self._retry_due() or (copy and error == "" and self._explain_model is None)

    def _cam_problem(self, module: ModuleType, copy: bool = True) -> str:
        """Why Grad-CAM cannot explain this model ('' when it can), found once from the model's structure with
        its target layers (`_cam_layers`), and its copy made (`copy`; start-up searches the shared model). Once known
        it is read without the lock: the event loop asks (GET /model, ?explain=true) while a worker thread may hold
        the lock for as long as it draws a heatmap."""
        if self._cam_due(copy):
            with self._explain_lock:
                if self._cam_due(copy):
                    try:
                        if self._cam_error != "":
                            searched = self._explain_copy() if copy else self.predictor.model
                            self._cam_layers = module.cam_layers(searched, self.meta)
                            self._unmapped = list(module.unmapped_members(self.meta, self._cam_layers))
                        else:
                            self._explain_copy()
                        with self._state_lock:  # seen apart, an old error without its retry time is a 501 for good
                            self._cam_error, self._cam_retry_at = "", None
                    except Exception as err:  # noqa: BLE001 - whatever it is: heatmaps off, service on
                        self._cam_failed(err)
        return self._cam_error

    def _cam_failed(self, err: Exception) -> None:
        """Heatmaps off for `err`, logged with it whole: for good, or until CAM_RETRY_S from now when memory (or file
        handles) ran short. Call with `_explain_lock` held."""
        retry = (out_of_memory(err) or too_many_files(err)) and not torch_half_loaded()
        if retry:
            self._cam_retry_utc = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + CAM_RETRY_S))
        error = cam_error(err, self.predictor.path)
        with self._state_lock:
            self._cam_retry_at, self._cam_error = time.monotonic() + CAM_RETRY_S if retry else None, error
        # a model with no feature map (an mlp) is the model chosen, not a fault: a warning, as alerting fires on ERROR
        log.log(logging.WARNING if no_feature_map(err) else logging.ERROR, "heatmaps off%s: %s [%s: %s]",
                f" until {self._cam_retry_utc}" if retry else "", self._cam_error, type(err).__name__,
                first_line(err, 500))

    def explain_png(self, upload: Decoded, label: str) -> bytes | None:
        """Grad-CAM overlay PNG of the evidence for `label` (the class the response gives) in one upload, drawn on
        its model input stretched back to the film's shape (`in_proportion`); None when the map is empty (Grad-CAM
        found no positive evidence for `label`: the overlay would be the bare film, which reads as evidence nowhere
        or a drawing fault); ExplainUnavailable when it cannot."""
        module = gradcam_module()
        if module is None:
            raise ExplainUnavailable(f"Grad-CAM is not available in this installation ({GRADCAM_MODULE} missing)")
        problem = self._cam_problem(module)
        if problem:
            shown, retry_s = self.explain_state()
            raise ExplainUnavailable(shown or problem, retry_s)
        with self._explain_lock:
            cam = module.gradcam_for_image(self._explain_copy(), self.meta, upload.image,
                                           target=self.meta.class_names.index(label), layers=self._cam_layers)
        return bytes(module.overlay_png(in_proportion(upload.image, upload.aspect), cam)) if cam.any() else None

    def unmapped_members(self) -> list[str]:
        """The ensemble's members the heatmaps leave out, by model name (an mlp: no feature map to draw), as `explain`
        names them (`gradcam.unmapped_members`); [] for any other model. Known with Grad-CAM's target layers: from
        start-up when the torch model is loaded then, else once Grad-CAM's model is loaded (the page's warm-up or the
        first heatmap)."""
        return list(self._unmapped)

    def model_info(self) -> dict[str, object]:
        info = describe(self.meta)
        problem, retry_s = self.explain_state()
        return {**info, "stored_threshold": info["threshold"], "threshold": self.predictor.threshold,
                "threshold_ci95": self.predictor.threshold_ci95,
                "operating_point": self.predictor.operating_point(),
                "backend": self.predictor.backend, "explain_available": self.explain_available(),
                "explain_loaded": self.explain_loaded, "explain_problem": problem, "explain_retry_s": retry_s,
                "max_upload_mb": self.settings.max_upload_mb, "max_batch_files": self.settings.max_batch_files,
                "max_batch_mb": self.settings.batch_limit_mb, "max_request_mb": self.settings.max_request_bytes / MB,
                "upload_memory_mb": self.settings.upload_memory_limit_mb,
                "upload_idle_s": self.settings.upload_idle_s, "upload_total_s": self.settings.upload_total_s,
                "ood_guard": self.guarded,
                "sha256": self.model_sha256, "shipped": self.shipped}
