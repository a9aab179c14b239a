"""Write a model file with new metadata: the weights copied bit for bit (checked) and its chest X-ray guard
re-keyed to the new file, so the guard does not go stale."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pneumoscan.artifact import ArtifactMeta, file_sha256, load_artifact, save_artifact
from pneumoscan.inference.ood import guard_path, load_guard


def rewrite_artifact(path: Path, model: nn.Module, meta: ArtifactMeta, source: Path | None = None) -> str:
    """Save `model` with `meta` as `path` (a .safetensors file), with the guard of `source` (the file `model` was
    loaded from; default `path`) re-keyed to it; 'sha256 old -> new ...'. A guard beside `path` that belongs to
    another model is removed, never carried over to this one."""
    source = path if source is None else source
    guard = load_guard(source)  # checked against that file as it is now
    if source.resolve() != path.resolve():
        guard_path(path).unlink(missing_ok=True)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    old_sha = file_sha256(path)[:12] if path.exists() else "none"
    save_artifact(path, model, meta)
    if guard is not None:
        guard.save_for(path)
    reloaded, _ = load_artifact(path)
    assert all(torch.equal(before[k], v) for k, v in reloaded.state_dict().items()), "weights changed"
    exported = _export_again(path)
    return (f"sha256 {old_sha} -> {file_sha256(path)[:12]}; {path.stat().st_size / 1e6:.2f} MB"
            + ("; guard re-keyed" if guard is not None else "") + ("; ONNX export made again" if exported else ""))


def _export_again(path: Path) -> bool:
    """Make the ONNX export beside `path` (the shipped weights/default.onnx) again, checked on the sample's train
    films, when there is one: an export of the old file would no longer be used, and the suite fails on it."""
    from pneumoscan.export.onnx import export_artifact

    onnx_path = path.with_suffix(".onnx")
    if not onnx_path.is_file():
        return False
    export_artifact(path, onnx_path, images=[Path(__file__).resolve().parents[1] / "sample" / "chest_xray" / "train"])
    return True
