"""Pilot for lung-field cropping without lung masks: train ablation row R's recipe on centre crops.

No lung masks ship with the data, so the cheap stand-in for a lung-field crop is a fixed centre
crop that drops the borders (labels, markers, arms, neck and abdomen). This writes a cropped copy
of DATA/train (keep FRAC of each side, back to the source size, PNG), trains row R's recipe on
it (or reuses a finished run), and scores it like bench/ablation.py: clean and shifted validation
AUC, where each shifted image is cropped after the shift, as a real cropping step would. Validation
only: no test image is read. Not a feature: it did not beat row R (see MODEL_CARD.md).

    python bench/pilot_centre_crop.py --data ../shared/data/chest_xray --frac 0.8 --work /tmp/crop80
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from PIL import Image

from _results import write_results
from stress_val import run_probs, score, shifted_sources, val_files

from pneumoscan.artifact import ARTIFACT_NAME, read_meta
from pneumoscan.training.config import EARLIER_GEOMETRY_AUGMENT, EARLIER_ONE_VIEW, TrainConfig
from pneumoscan.training.trainer import LAST_CHECKPOINT, train


def centre_crop(image: Image.Image, frac: float) -> Image.Image:
    """The centre `frac` of each side of a square image."""
    size = image.size[0]
    keep = int(round(size * frac))
    start = (size - keep) // 2
    return image.crop((start, start, start + keep, start + keep))


def cropped_copy(data: Path, work: Path, frac: float) -> Path:
    """DATA/train centre-cropped into WORK/chest_xray/train (same names, .png); returns WORK/chest_xray."""
    root = work / "chest_xray"
    for path in sorted((data / "train").glob("*/*")):
        dst = root / "train" / path.parent.name / (path.stem + ".png")
        if not dst.exists():
            image = Image.open(path).convert("L")
            dst.parent.mkdir(parents=True, exist_ok=True)
            centre_crop(image, frac).resize(image.size, Image.Resampling.BILINEAR).save(dst)
    return root


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    parser.add_argument("--frac", type=float, default=0.8, help="share of each side kept (default 0.8)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the cropped copy of train/")
    parser.add_argument("--runs", type=Path, default=Path("runs/pilot"))
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    root = cropped_copy(args.data, args.work, args.frac)
    out = args.runs / f"crop{round(args.frac * 100)}"
    if not (out / ARTIFACT_NAME).exists():
        # the recipe shipped in the fifth session (zoom +-10 %, no stretch, one view, 25 epochs), which this
        # pilot was measured against
        train(TrainConfig(data=str(root), out=str(out), **EARLIER_GEOMETRY_AUGMENT, **EARLIER_ONE_VIEW),
              resume=(out / LAST_CHECKPOINT).exists(), progress=sys.stderr.isatty())
    paths, labels = val_files(out)
    originals = [next((args.data / "train" / p.parent.name).glob(p.stem + ".*")) for p in paths]
    cropped = {shift: [centre_crop(im, args.frac) for im in images] for shift, images in shifted_sources(originals, labels).items()}
    row = {**score(out.name, labels, run_probs(out, cropped)), "frac": args.frac,
           "train_seconds": read_meta(out / ARTIFACT_NAME).training.get("train_seconds")}
    write_results("pilot_centre_crop", [row], ["run", "frac", "train_seconds", "val_auc", "val_log_loss", "stress_auc_mean",
                                               "stress_auc_min", "stress_worst", "stress_log_loss_mean"],
                  command="python bench/pilot_centre_crop.py " + shlex.join(sys.argv[1:]),
                  note="Row R's recipe (resnet10 128 px, class-balanced batches, equalisation, zoom 10 %, seed 0) on centre "
                       "crops; validation = the same patient-aware split as bench/ablation.py, so the stress scores "
                       "compare with its rows (row R, the recipe it was measured against: 0.9979).")


if __name__ == "__main__":
    main()
