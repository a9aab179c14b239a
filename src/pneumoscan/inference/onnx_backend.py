"""ONNX Runtime inference: a CPU session over a pneumoscan ONNX export, normalising like PyTorch."""
from __future__ import annotations

import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pneumoscan.artifact import TOO_LARGE, TOO_LARGE_ADVICE, ArtifactMeta, pixel_count_problem
from pneumoscan.data.preprocess import Preprocessing
from pneumoscan.errors import InputError, first_line, option, raise_if_interrupted, words
from pneumoscan.inference.batch import sigmoid

if TYPE_CHECKING:  # a session over an export on file runs without torch (its import takes 1.5 s)
    from torch import nn

_ORT_HINT = "pip install onnxruntime"
BACKENDS = ("torch", "onnx", "auto")
# What a GPU that torch.cuda can use shows on Linux: NVIDIA's driver, a Jetson's integrated GPU, AMD's ROCm
# (torch.cuda runs on it too), WSL2's GPU bridge. Without any of them torch.cuda.is_available() is False, so torch
# is not imported to ask.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu",
                    "/dev/kfd", "/dev/dxg")


def onnxruntime_available() -> bool:
    """True when onnxruntime imports and onnx (needed to export on the fly, imported only then) is installed."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise_if_interrupted(err)
        return False
    return importlib.util.find_spec("onnx") is not None


def cuda_available() -> bool:
    """`torch.cuda.is_available()`, without importing torch on a Linux machine that shows no GPU
    (`GPU_DEVICE_FILES`); torch is asked when one is shown, on other systems, and once torch is imported anyway."""
    if "torch" not in sys.modules and sys.platform.startswith("linux") \
            and not any(os.path.exists(path) for path in GPU_DEVICE_FILES):
        return False
    return torch_cuda_available()


def torch_cuda_available() -> bool:
    """What torch says: whether it can use a CUDA (or ROCm) GPU, one this PyTorch build has kernels for."""
    from pneumoscan.inference.batch import cuda_usable

    return cuda_usable()


def resolve_backend(backend: str) -> str:
    """'torch' or 'onnx' for a requested backend; 'auto' picks PyTorch when CUDA is present (ONNX Runtime runs on the
    CPU here), else onnx when onnxruntime imports."""
    if backend not in BACKENDS:
        raise InputError(f"{option('backend', backend)}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnx" if onnxruntime_available() and not cuda_available() else "torch"
    if backend == "onnx" and not onnxruntime_available():
        raise InputError(f"backend 'onnx' needs onnx and onnxruntime; {_ORT_HINT} onnx, or use "
                         f"{option('backend', 'torch')}")
    return backend


def default_threads() -> int:
    """Intra-op threads: $PNEUMOSCAN_ORT_THREADS, else the cores this process may use, at most 4."""
    env = os.environ.get("PNEUMOSCAN_ORT_THREADS", "").strip()
    if env:
        if not (env.isdigit() and int(env) > 0):
            raise InputError(f"PNEUMOSCAN_ORT_THREADS={env!r}: must be a whole number above 0 (ONNX Runtime's "
                             f"threads per model), such as 2; or unset it to use the cores available, at most 4")
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def input_of(metadata: dict[str, str]) -> tuple[Preprocessing, int]:
    """How an export's input is preprocessed, and its side in px, from its pneumoscan metadata; ValueError naming
    the entry that is missing or unusable (an edited file)."""

    def entry(key: str, default: str | None = None) -> str:
        if key not in metadata and default is None:
            raise ValueError(f"{key} missing")
        return metadata.get(key, default or "")

    def number(key: str) -> float:
        try:
            value = float(entry(key))
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (key == "std" and value <= 0):
            raise ValueError(f"{key} {entry(key)!r}: not a finite number{' above 0' if key == 'std' else ''}")
        return value

    def flag(key: str) -> bool:
        text = entry(key, "false")
        if text not in ("true", "false"):
            raise ValueError(f"{key} {text!r}: not true or false")
        return text == "true"

    size = _stored_pixels(entry("input_size"))
    if (size_problem := pixel_count_problem(size)) is not None:
        raise ValueError(f"input_size {entry('input_size')!r}: {size_problem}")
    return Preprocessing(number("mean"), number("std"), flag("equalize"), flag("crop")), size


def _stored_pixels(text: str) -> int | str:
    """An export's input_size as a whole number when it is written as one in ASCII digits (not `²`, which
    `isdigit` takes and int() refuses), else the text itself; at most 9 digits, so that thousands of them are not
    handed to int() (whose refusal names Python's digit limit): no pixel count is that long."""
    return int(text) if text.isascii() and text.isdecimal() and len(text) <= 9 else text


class OnnxBackend:
    """A thread-safe ONNX Runtime CPU session for a pneumoscan export (input: normalised float32)."""

    def __init__(self, model: bytes | str | os.PathLike, *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise_if_interrupted(err)
            raise InputError(f"the onnx backend needs onnxruntime; {_ORT_HINT}") from None

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # fatal only: an error is raised as well, and pneumoscan says it in one line; ORT's own log line of it (ANSI
        # red, on stderr's file descriptor) would come before it
        options.log_severity_level = 4
        # Idle workers sleep instead of spinning: measurably faster when the cores are shared
        # (decode threads, other requests, other processes), and no busy CPU between requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        label = "<in-memory ONNX>" if isinstance(model, bytes) else os.fspath(model)
        self.source = label
        try:
            source = model if isinstance(model, bytes) else os.fspath(model)
            self.session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ORT raises its own types for unreadable models
            # ORT's error stays the cause: `check_onnx` tells a graph it cannot load (no kernel for a float64 Conv)
            # from a file that is no model by it
            raise InputError(f"{label}: not a loadable ONNX model ({type(err).__name__}: {first_line(err, 200)}); "
                             "export one with `pneumoscan export`") from err
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k.removeprefix("pneumoscan."): v for k, v in props.items() if k.startswith("pneumoscan.")}
        if "mean" not in self.metadata or "input_size" not in self.metadata:
            raise InputError(f"{label}: ONNX model without pneumoscan metadata; export it with `pneumoscan export`")
        try:
            self.preprocessing, self.size = input_of(self.metadata)
        except ValueError as err:
            # exported at that size, it can only be exported again at it: the header's way out
            too_large = pixel_count_problem(_stored_pixels(self.metadata["input_size"])) == TOO_LARGE
            advice = TOO_LARGE_ADVICE if too_large else "export it again with `pneumoscan export`"
            raise InputError(f"{label}: ONNX model with unusable pneumoscan metadata ({err}); {advice}") from None
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        self.has_features = len(names) > 1
        # exports before the logit output existed give float32 probabilities only
        self._logit_index = names.index("logit") if "logit" in names else None

    def predict_probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """P(PNEUMONIA) for uint8 images (N, S, S), (N,): float64 from the logit when the export has it."""
        return self.predict_with_features(images, batch_size)[0]

    def predict_with_features(self, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and, for exports that carry them, the penultimate features (N, D) of one run."""
        images = np.asarray(images)
        if images.ndim != 3 or images.shape[1:] != (self.size, self.size):
            raise ValueError(f"expected uint8 images (N, {self.size}, {self.size}), got shape {images.shape}")
        probs = np.empty(len(images), dtype=np.float32 if self._logit_index is None else np.float64)
        features: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):
            x = self.preprocessing.numpy(images[start : start + batch_size])
            outputs = self.session.run(None, {self.input_name: x})
            if self._logit_index is None:
                probs[start : start + len(x)] = outputs[0].reshape(-1)
            else:
                probs[start : start + len(x)] = sigmoid(outputs[self._logit_index].reshape(-1))
            if len(outputs) > 1:
                features.append(outputs[1])
        return probs, (np.concatenate(features) if features else None)


def preprocessing_difference(export: Preprocessing, model: Preprocessing) -> str:
    """How an export's preprocessing (from its metadata, which ONNX Runtime's input follows) differs from its
    model's, as 'mean 0.7 vs 0.5'; '' when they are the same."""
    return ", ".join(f"{name} {getattr(export, name)!r} vs {getattr(model, name)!r}"
                     for name in ("mean", "std", "equalize", "crop") if getattr(export, name) != getattr(model, name))


def export_on_file(artifact_path: str | os.PathLike, meta: ArtifactMeta, onnx_path: str | os.PathLike | None = None,
                   *, threads: int | None = None, artifact_sha256: str | None = None) -> OnnxBackend | None:
    """The session of an artifact's export on file, opened without torch, or None when there is none.

    `onnx_path` given: load it (it must come from this artifact and normalise its input as the artifact says).
    Otherwise use `<artifact>.onnx` next to the artifact when it was exported from the very same file (the sha256 in
    its metadata) and normalises likewise; None else (an export is then made in memory). `artifact_sha256`: the
    artifact's, when the caller hashed it already.
    """
    from pneumoscan.artifact import file_sha256

    digest = artifact_sha256 or file_sha256(artifact_path)
    sibling = Path(artifact_path).with_suffix(".onnx")
    if onnx_path is not None:
        if not Path(onnx_path).is_file():  # ONNX Runtime would call it 'not a loadable ONNX model (NoSuchFile)'
            raise InputError(f"{onnx_path}: no such file; check the path, or leave out {words('--onnx', '`onnx_path`')} "
                             f"(an export is then made in memory)")
        backend = OnnxBackend(onnx_path, threads=threads)
        if backend.metadata.get("artifact_sha256") not in (None, digest):
            raise InputError(f"{onnx_path}: exported from a different model than {artifact_path}; pass that model's "
                             f"own export, or leave out {words('--onnx', '`onnx_path`')} (an export is then made in "
                             f"memory)")
        if backend.size != meta.image_size:
            raise InputError(f"{onnx_path}: input size {backend.size} does not match the model's {meta.image_size}")
        differs = preprocessing_difference(backend.preprocessing, meta.preprocessing)
        if differs:
            raise InputError(f"{onnx_path}: normalises its input otherwise than {artifact_path} ({differs}); export "
                             f"that model again, or leave out {words('--onnx', '`onnx_path`')} (an export is then made "
                             f"in memory)")
        return backend
    if sibling.is_file():
        try:
            backend = OnnxBackend(sibling, threads=threads)
        except InputError:
            backend = None
        if backend is not None and backend.metadata.get("artifact_sha256") == digest \
                and not preprocessing_difference(backend.preprocessing, meta.preprocessing):
            return backend
    return None


def export_in_memory(artifact_path: str | os.PathLike, model: nn.Module, meta: ArtifactMeta, *,
                     threads: int | None = None, artifact_sha256: str | None = None) -> OnnxBackend:
    """A session over `model` exported in memory, once it passed its check against PyTorch (ExportError when it
    cannot be exported or fails the check); `artifact_sha256` as for `export_on_file`."""
    from pneumoscan.artifact import file_sha256
    from pneumoscan.export.onnx import check_images, check_onnx, export_onnx_bytes

    data = export_onnx_bytes(model, meta, artifact_sha256=artifact_sha256 or file_sha256(artifact_path))
    images, _ = check_images(meta.image_size, limit=4)
    check_onnx(data, model, meta, images)
    return OnnxBackend(data, threads=threads)


def export_in_memory_or_torch(artifact_path: str | os.PathLike, model: nn.Module, meta: ArtifactMeta, *,
                              artifact_sha256: str | None = None, fallback: bool) -> OnnxBackend | None:
    """The session of the model exported in memory (`export_in_memory`), when no export on file serves; with
    `fallback` (--backend auto), a model that cannot be exported (a plugin's), or an export that fails its check
    against PyTorch, is warned about and None returned: prediction stays on PyTorch. Without it the failure stops it,
    naming the model file."""
    from pneumoscan.errors import warn
    from pneumoscan.export.onnx import ExportCheckError, ExportError

    try:
        return export_in_memory(artifact_path, model, meta, artifact_sha256=artifact_sha256)
    except ExportError as err:
        if not fallback:  # --backend onnx: the failure stops it, naming the model file as its warning does
            raise type(err)(f"{artifact_path}: {err}") from None
        said = str(err).removesuffix(f"; predict with {option('backend', 'torch')}")  # as it does from here
        why = f"its ONNX export failed the check against PyTorch ({said})" if isinstance(err, ExportCheckError) \
            else said
        warn(f"{artifact_path}: {why}; predicting with PyTorch instead")
        return None
