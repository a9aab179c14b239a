"""CLI hook: `pneumoscan fit-guard` fits the out-of-distribution guard of a model on training X-rays."""
from __future__ import annotations

import argparse
import sys

from pneumoscan.data.cache_commands import add_cache_dir_arg
from pneumoscan.inference.commands import add_model_arg


def cmd_fit_guard(args: argparse.Namespace) -> int:
    from pneumoscan.errors import InputError
    from pneumoscan.inference.ood import OODGuard, fit_guard, guard_path, is_guard_file
    from pneumoscan.progress import write_warning

    if args.model is None and args.out is None:  # the shipped guard serves every default prediction of this install
        raise InputError(f"{guard_path(None)}: this is the shipped model's guard, fitted on the full "
                         f"training split; to replace it, pass that path as --out (or fit a guard for your own run "
                         f"with --model RUN)")
    # fail before the fit, not after it: the given --out, or the default beside the model
    from pneumoscan.outputs import check_output

    out = check_output(args.out if args.out else guard_path(args.model), (".safetensors",), "the guard")
    if out.is_file() and not is_guard_file(out):  # an earlier guard may be replaced; a model or weights may not
        from pneumoscan.artifact import read_meta

        try:
            read_meta(out)
            kind = "a model"
        except InputError:
            kind = "another kind of safetensors file (e.g. pretrained weights)"
        raise InputError(f"{out}: is {kind}, not a guard; give --out another file name (by default the guard goes "
                         f"beside the model as MODEL.ood.safetensors)")
    path = fit_guard(args.model, args.data, out=args.out, max_images=args.max_images,
                     max_false_rejection=args.max_false_rejection, seed=args.seed, cache_dir=args.cache_dir)
    meta = OODGuard.read(path).meta
    for message in meta.get("skipped", []):
        write_warning(f"skipped {message}")
    for message in meta.get("left_out", []):
        print(f"left out of the fit: {message}", file=sys.stderr)
    print(f"guard: {path}")
    print(f"fitted on {meta['n_images']} training X-rays; threshold {meta['threshold']:.4f}, "
          f"held-out false rejections {meta['held_out_rejection_rate']:.2%} "
          f"(budget {meta['max_false_rejection']:.2%})")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `fit-guard`."""
    p = subparsers.add_parser(
        "fit-guard", help="fit the 'is this a chest X-ray?' guard of a model on its training images")
    add_model_arg(p)
    p.add_argument("--data", required=True,
                   help="data folder: its train/ split (or NORMAL/ PNEUMONIA/ class folders) is used, never test/")
    p.add_argument("--out", help="guard file to write (default: <model>.ood.safetensors beside the model; for the shipped "
                        "model it must be given; not in --data's split or class folders)")
    p.add_argument("--max-images", type=int, help="fit on at most this many images (random subset)")
    p.add_argument("--max-false-rejection", type=float, default=0.01,
                   help="allowed share of real X-rays rejected (default 0.01; half of it is used on held-out images)")
    p.add_argument("--seed", type=int, default=0, help="seed for the subset and the cross-fitting folds (default 0)")
    add_cache_dir_arg(p)
    p.set_defaults(func=cmd_fit_guard)
