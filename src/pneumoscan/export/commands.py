"""`pneumoscan export`: write a checked ONNX model for fast CPU inference."""
from __future__ import annotations

import argparse
from typing import Any


def cmd_export(args: argparse.Namespace) -> int:
    """Export, check against PyTorch, report the agreement."""
    from pneumoscan.export.onnx import TOLERANCE, export_artifact
    from pneumoscan.outputs import check_output

    check_output(args.out, (".onnx",), "the model")
    report = export_artifact(args.model, args.out, images=args.images)
    print(f"onnx: {report.path}")
    print(f"check: onnx.checker passed; max |P(onnx) - P(torch)| = {report.max_abs_diff:.2e} "
          f"(limit {TOLERANCE:g}) on {report.image_source}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Register `export` on the main CLI."""
    p = subparsers.add_parser("export", help="export a model to ONNX (checked against PyTorch) for fast CPU inference")
    p.add_argument("--model", help="run folder or model.safetensors (default: the model shipped with pneumoscan)")
    p.add_argument("--out", required=True, help="where to write the .onnx file; name it like the artifact "
                                                 "(RUN/model.onnx) and predict/serve pick it up automatically")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="X-ray files or folders to check the export on, up to 64 readable images (unreadable files "
                        "are left out with a warning; default: 8 of the bundled sample)")
    p.set_defaults(func=cmd_export)
