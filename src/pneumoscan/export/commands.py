"""`pneumoscan export`: write a checked ONNX model for fast CPU inference."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pneumoscan.inference.commands import add_model_arg


def cmd_export(args: argparse.Namespace) -> int:
    """Export, check against PyTorch, report the agreement; Ctrl+C after the file was renamed into place says so."""
    from pneumoscan.export.onnx import TOLERANCE, export_artifact
    from pneumoscan.outputs import check_output

    out = check_output(args.out, (".onnx",), "the model")
    before = _identity(out)
    try:
        report = export_artifact(args.model, out, images=args.images)
        print(f"onnx: {report.path}")
        print(f"check: onnx.checker passed; max |P(onnx) - P(torch)| = {report.max_abs_diff:.2e} "
              f"(limit {TOLERANCE:g}) on {report.image_source}")
    except KeyboardInterrupt:
        if _identity(out) not in (None, before):  # renamed into place: the file is new, whole and checked
            raise KeyboardInterrupt(f"after {out} was written: it is whole and passed its check against PyTorch") \
                from None
        raise
    return 0


def _identity(path: Path) -> tuple[int, int, int] | None:
    """PATH's device, inode and modification time, or None when it is absent: a file renamed over it changes them."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns


def add_commands(subparsers: Any) -> None:
    """Register `export` on the main CLI."""
    p = subparsers.add_parser("export", help="export a model to ONNX (checked against PyTorch) for fast CPU inference")
    add_model_arg(p)
    p.add_argument("--out", required=True, help="where to write the .onnx file; name it like the artifact "
                                                 "(RUN/model.onnx) and predict/serve pick it up automatically")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="X-ray files or folders to check the export on, up to 64 readable images (unreadable files "
                        "are left out with a warning; default: 8 of the bundled sample)")
    p.set_defaults(func=cmd_export)
