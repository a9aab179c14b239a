"""Export a model artifact to ONNX (P(pneumonia) out, metadata inside) and check it against PyTorch.

Exporter: torch 2.13's default (dynamo) exporter needs the extra `onnxscript` package, so this
uses the TorchScript-based exporter (`dynamo=False`), which handles these plain conv nets exactly.
The graph takes float32 images (N, 1, S, S) already preprocessed by the artifact's
`meta.preprocessing` (cropped to the body and equalised when it says so, then standardised) and returns float32
probabilities (N,), the penultimate features, and the logits (N,) from which pneumoscan's backend
computes the probabilities in float64 (float32 rounds every logit above about 17 to P = 1.0).
Test-time augmentation (`tta`) is part of the graph: the mean logit of the image and its
left-right mirror, as in `pneumoscan.inference.batch`.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn

from pneumoscan import __version__
from pneumoscan.artifact import ArtifactMeta, file_sha256, load_artifact, resolve_model_path
from pneumoscan.errors import (InputError, MissingImagesWarning, PneumoscanError, counted, first_few, first_line,
                              option, raise_if_interrupted, warn)
from pneumoscan.inference.ood import final_linear, forward_with_features
from pneumoscan.outputs import atomic_write

INPUT_NAME = "image"
OUTPUT_NAME = "probability"
FEATURES_NAME = "features"
LOGIT_NAME = "logit"
OPSET = 17
TOLERANCE = 1e-4
META_PREFIX = "pneumoscan."
_ORT_HINT = "pip install onnx onnxruntime"


class ExportError(PneumoscanError):
    """The model cannot be exported to ONNX (a plugin's model without an nn.Linear, or with operations the exporter
    cannot trace), or its export is unusable (ExportCheckError)."""


class ExportCheckError(ExportError):
    """The exported ONNX model is invalid or disagrees with the PyTorch model."""


class ProbabilityHead(nn.Module):
    """Wraps a single-logit model: sigmoid of the logit (mirror-averaged when `tta`), plus the
    penultimate features of the unmirrored pass (the input of the final nn.Linear) that the
    out-of-distribution guard scores, so one ONNX run serves both, and the logit itself."""

    def __init__(self, model: nn.Module, tta: bool) -> None:
        super().__init__()
        self.model = model
        self.tta = tta
        self._features: list[torch.Tensor] = []
        final_linear(model).register_forward_pre_hook(lambda _m, inputs: self._features.append(inputs[0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._features.clear()
        logits = self.model(x)
        features = self._features[0].reshape(x.shape[0], -1)
        if self.tta:
            logits = (logits + self.model(torch.flip(x, dims=[3]))) / 2
        return torch.sigmoid(logits), features, logits


@dataclass
class ExportReport:
    """What `export_artifact` wrote and how closely ONNX Runtime matched PyTorch."""

    path: Path
    max_abs_diff: float
    n_images: int
    image_source: str


def onnx_metadata(meta: ArtifactMeta, artifact_sha256: str | None = None) -> dict[str, str]:
    """The `metadata_props` written into every exported model (all values are strings)."""
    props = {
        "class_names": json.dumps(list(meta.class_names)),
        "input_size": str(meta.image_size),
        "input_layout": "float32 (N, 1, S, S), (pixel / 255 - mean) / std"
                        + (", each image cropped to a square as wide as the body first (pneumoscan.data.framing)"
                           if meta.crop else "")
                        + (", pixels histogram-equalised per image first" if meta.equalize else ""),
        "equalize": json.dumps(bool(meta.equalize)),
        "crop": json.dumps(bool(meta.crop)),
        "mean": repr(float(meta.mean)),
        "std": repr(float(meta.std)),
        "threshold": repr(float(meta.threshold)),
        "tta": json.dumps(bool(meta.tta)),
        "tta_in_graph": json.dumps(bool(meta.tta)),
        "output": "probability: P(PNEUMONIA), sigmoid of the logit; features: penultimate layer; logit",
        "model_name": meta.model_name,
        "model_version": meta.version,
        "pneumoscan_version": __version__,
        "artifact_meta": meta.to_json(),
    }
    if artifact_sha256:
        props["artifact_sha256"] = artifact_sha256
    return {META_PREFIX + k: v for k, v in props.items()}


def read_onnx_metadata(model_bytes_or_path: bytes | str | os.PathLike) -> dict[str, str]:
    """The pneumoscan entries of an ONNX model's `metadata_props`, without the prefix."""
    import onnx

    proto = (onnx.load_from_string(model_bytes_or_path) if isinstance(model_bytes_or_path, bytes)
             else onnx.load(str(model_bytes_or_path), load_external_data=False))
    return {p.key[len(META_PREFIX):]: p.value for p in proto.metadata_props if p.key.startswith(META_PREFIX)}


def export_onnx_bytes(model: nn.Module, meta: ArtifactMeta, *, artifact_sha256: str | None = None) -> bytes:
    """Serialised ONNX model (dynamic batch axis) of `model` with the artifact's metadata."""
    try:
        import onnx
    except ImportError as err:
        raise_if_interrupted(err)
        raise InputError(f"ONNX export needs the onnx package; {_ORT_HINT}") from None

    from pneumoscan.models.registry import NoFeatureLayer

    try:
        head = ProbabilityHead(copy.deepcopy(model).cpu().float().eval(), meta.tta).eval()
    except NoFeatureLayer as err:
        raise ExportError(f"model {meta.model_name!r} cannot be exported to ONNX: {err}") from None
    example = torch.zeros(2, 1, meta.image_size, meta.image_size, dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            with _exporter_log_discarded():
                torch.onnx.export(
                    head, (example,), buffer, dynamo=False, opset_version=OPSET, do_constant_folding=True,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME, FEATURES_NAME, LOGIT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}, FEATURES_NAME: {0: "batch"},
                                  LOGIT_NAME: {0: "batch"}},
                )
        except Exception as err:  # noqa: BLE001 - a plugin's model may use what the exporter cannot trace
            raise ExportError(f"model {meta.model_name!r} cannot be exported to ONNX ({type(err).__name__}: "
                              f"{first_line(err, 200)}); predict with {option('backend', 'torch')}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    proto.producer_name = "pneumoscan"
    proto.producer_version = __version__
    proto.doc_string = f"pneumoscan {meta.model_name}: P(PNEUMONIA) from a normalised {meta.image_size} px chest X-ray"
    onnx.helper.set_model_props(proto, onnx_metadata(meta, artifact_sha256))
    return proto.SerializeToString()


@contextlib.contextmanager
def _exporter_log_discarded() -> Iterator[None]:
    """While it runs, what the TorchScript exporter writes to its C++ log goes nowhere: torch 2.13 turns that log on
    for every export (setup_onnx_logging tests the function `_jit_is_onnx_log_enabled` instead of calling it) and
    writes the whole graph to it when an export fails, on stdout, where it would corrupt `predict --json`. The log
    is sent to stderr and stderr's file descriptor to the null device (the log bypasses sys.stderr)."""
    torch._C._jit_set_onnx_log_output_stream("stderr")
    sys.stderr.flush()
    try:
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no stderr to keep clean (a closed descriptor)
        yield
        return
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def check_onnx(onnx_bytes: bytes, model: nn.Module, meta: ArtifactMeta, images: np.ndarray,
               tolerance: float = TOLERANCE) -> float:
    """Validate the graph, then compare ONNX Runtime with PyTorch on uint8 images (N, S, S).

    Returns the largest absolute probability difference; raises ExportCheckError above `tolerance`.
    """
    import onnx

    from pneumoscan.inference.batch import predict_probs
    from pneumoscan.inference.onnx_backend import OnnxBackend

    try:
        onnx.checker.check_model(onnx.load_from_string(onnx_bytes), full_check=True)
    except Exception as err:  # noqa: BLE001 - any checker failure means the export is unusable
        raise ExportCheckError(f"exported ONNX model fails onnx.checker: {err}") from err
    expected = predict_probs(model, images, meta.preprocessing, tta=meta.tta)
    bad = int(np.count_nonzero(~np.isfinite(expected)))
    if bad:  # no export of such weights can agree: the model is at fault, not the exporter
        raise ExportCheckError(f"the model gave no probability (NaN) for {bad} of {len(expected)} images in PyTorch, "
                               f"so its weights are damaged; restore the model file or train it again")
    with _runtime_failure_refused():
        session = OnnxBackend(onnx_bytes, threads=1)
        got = session.predict_probs(images)
        single = session.predict_probs(images[:1])  # the batch axis really is dynamic
        _, features = session.predict_with_features(images)
    diff = float(max(np.max(np.abs(got - expected)), np.max(np.abs(single - expected[:1]))))
    if not np.isfinite(diff) or diff > tolerance:
        raise ExportCheckError(f"ONNX Runtime and PyTorch disagree: max |P diff| = {diff:.3g} > {tolerance:g}")
    _, expected_features = forward_with_features(model, images, meta.preprocessing)
    scale = float(np.max(np.abs(expected_features))) or 1.0
    feature_diff = float(np.max(np.abs(features - expected_features))) / scale
    if not np.isfinite(feature_diff) or feature_diff > tolerance:
        raise ExportCheckError(f"ONNX Runtime and PyTorch features disagree: relative max diff {feature_diff:.3g}")
    return diff


@contextlib.contextmanager
def _runtime_failure_refused() -> Iterator[None]:
    """ONNX Runtime failing to load the exported graph (no CPU kernel for an operator, as for a Conv in float64) or to
    run it (a model whose trace fixed the batch size, as `int(x.shape[0])` does, fails on any other batch) is an
    ExportCheckError, as a disagreement is: the export is unusable."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - ONNX Runtime's own types have no common base but Exception
        # OnnxBackend's refusal to load the graph has ORT's error as its cause
        cause = err.__cause__ if isinstance(err, InputError) else err
        if cause is None or not type(cause).__module__.startswith("onnxruntime"):
            raise
        doing = "run" if cause is err else "load"
        raise ExportCheckError(f"ONNX Runtime cannot {doing} the exported model ({type(cause).__name__}: "
                               f"{first_line(cause, 200)}); predict with {option('backend', 'torch')}") from None


def sample_image_paths(limit: int = 8) -> list[Path]:
    """Real X-rays from the bundled sample's train folder (both classes), or [] when it is not installed: never its
    test folder, films of the official test split, which no model runs on but to report on it."""
    from pneumoscan.data.formats import is_image_path

    here = Path(__file__).resolve().parents[1]
    for root in (here / "sample" / "chest_xray", here.parents[1] / "sample" / "chest_xray"):
        if root.is_dir():
            per_class = [sorted(p for p in (root / "train" / c).glob("*") if is_image_path(p))
                         for c in ("NORMAL", "PNEUMONIA")]
            mixed = [p for pair in zip(*per_class) for p in pair]
            if mixed:
                return mixed[:limit]
    return []


GIVEN_LIMIT = 64  # images of --images checked, in one batch through both runtimes


def _given_images(size: int, given: list[Path]) -> tuple[np.ndarray, str]:
    """The first GIVEN_LIMIT readable ones of `given` and where they came from; unreadable files are left out with
    one warning naming them (as every command goes on past them), and InputError when none can be read."""
    from pneumoscan.data.preprocess import load_image

    images: list[np.ndarray] = []
    skipped: list[str] = []
    for path in given:
        if len(images) == GIVEN_LIMIT:
            break
        try:
            images.append(load_image(path, size))
        except InputError as err:
            skipped.append(str(err))
    if not images:
        raise InputError(f"none of the {len(given)} {option('images')} files could be read: {first_few(skipped)}; "
                         f"give readable X-rays")
    if skipped:
        warn(MissingImagesWarning(f"{counted(len(skipped), 'unreadable image')} left out of the export check: "
                                  f"{first_few(skipped)}"))
    read = len(images) + len(skipped)
    among = f"{len(given)} given images" if read == len(given) else f"the first {read} of {len(given)} given images"
    return np.stack(images), (f"{len(images)} readable of {among}" if skipped else among)


def check_images(size: int, paths: list[str | os.PathLike] | None = None, limit: int = 8) -> tuple[np.ndarray, str]:
    """uint8 images (N, S, S) to check an export on, and where they came from.

    Given paths (files or folders: up to GIVEN_LIMIT of them) first, else (None) `limit` bundled sample X-rays, else
    deterministic noise. No paths given ([]: a pattern that matched nothing) is an InputError, not the sample.
    """
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.inference.inputs import expand_paths

    if paths is not None:
        if not paths:
            raise InputError(f"{option('images')} is empty: no image to check the export on (a pattern that matched "
                             f"no file?); give image files or folders, or leave it out to check on the bundled sample")
        return _given_images(size, expand_paths(list(paths)))
    files = sample_image_paths(limit)
    if files:
        return np.stack([load_image(f, size) for f in files]), f"{len(files)} bundled sample X-rays"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, size, size), dtype=np.uint8), "4 synthetic noise images (no sample found)"


def export_artifact(model: str | os.PathLike | None, out: str | os.PathLike,
                    images: list[str | os.PathLike] | None = None) -> ExportReport:
    """Export an artifact to `out` (.onnx), after checking it; writes atomically."""
    path = resolve_model_path(model)
    torch_model, meta = load_artifact(path, "cpu")  # checked against ONNX Runtime on the CPU, where it runs
    batch, source = check_images(meta.image_size, images)  # a mistake in `images` before the export's seconds
    onnx_bytes = export_onnx_bytes(torch_model, meta, artifact_sha256=file_sha256(path))
    try:
        diff = check_onnx(onnx_bytes, torch_model, meta, batch)
    except ExportCheckError as err:  # named by the model file it was exported from, as every other refusal is
        raise ExportCheckError(f"{path}: {err}") from None
    out = atomic_write(out, lambda tmp: tmp.write_bytes(onnx_bytes))
    return ExportReport(out, diff, len(batch), source)
