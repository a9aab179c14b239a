"""Whether a few-grey-levels cue could refuse 4-tone and posterised JPEGs: measured on train films only.

The guard's grey-level rule counts the distinct levels a file decodes to (at most `MAX_GREY_LEVELS` is refused),
which a JPEG's compression noise hides. A histogram cue that survives that noise: the share of a JPEG's pixels,
decoded at full size, within +-3 levels of its 4 most common levels (`peak_share`; each peak's 7 levels taken out
before the next is found). Measured on every train film and on the bundled sample's train films (false refusals
at a cut), and on pictures made from every Nth train film (4 tones Floyd-Steinberg dithered; 4 and 8 tones
posterised, no dither) saved as JPEG: their peak share, distinct grey levels, high-pass energy (mean |image - 2x2
box blur| at full size, `texture_cue.py`) and whether the shipped guard passes them now. test/ is never read.

    PYTHONPATH=src .venv/bin/python bench/few_grey_levels.py [--data ../shared/data/chest_xray]

Writes bench/results/few_grey_levels.json and bench/results/few_grey_levels.md.
"""
from __future__ import annotations

import argparse
import io
import shlex
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from _results import image_files_under, picture_bench_parser, write_report
from texture_cue import high_pass_energy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chest_xray"
PEAKS, BAND = 4, 3
CUT = 0.8  # a cut with margin over the train films' largest peak share (0.635)
PICTURES = (("4 tones, Floyd-Steinberg dithered", 4, True), ("4 tones, posterised", 4, False),
            ("8 tones, posterised", 8, False))


def peak_share(gray: Image.Image, peaks: int = PEAKS, band: int = BAND) -> float:
    """Share of the pixels of a grey image within `band` levels of its `peaks` most common levels."""
    histogram = np.array(gray.histogram(), dtype=np.float64)
    left, taken = histogram.copy(), 0.0
    for _ in range(peaks):
        top = int(left.argmax())
        low, high = max(0, top - band), min(256, top + band + 1)
        taken += left[low:high].sum()
        left[low:high] = 0
    return taken / histogram.sum()


def grey_levels(gray: Image.Image) -> int:
    return sum(1 for count in gray.histogram() if count)


def tones(gray: Image.Image, n: int, dither: bool) -> Image.Image:
    """GRAY reduced to `n` evenly spaced grey levels, dithered (Floyd-Steinberg) or not (posterised)."""
    values = np.linspace(0, 255, n).round().astype(int)
    palette = Image.new("P", (1, 1))
    palette.putpalette([int(v) for v in values for _ in range(3)] + [0] * (256 - n) * 3)
    mode = Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE
    return gray.convert("RGB").quantize(palette=palette, dither=mode).convert("L")


def jpeg(gray: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    gray.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def real_films(paths: list[Path]) -> dict[str, object]:
    """Peak share, grey levels and high-pass energy of the films as stored."""
    shares, levels, energy = [], [], []
    for path in paths:
        gray = Image.open(path).convert("L")
        shares.append(peak_share(gray))
        levels.append(grey_levels(gray))
        energy.append(high_pass_energy(np.asarray(gray)))
    share = np.array(shares)
    return {"films": len(paths), "peak_share_median": float(np.median(share)),
            "peak_share_p99": float(np.quantile(share, 0.99)), "peak_share_p999": float(np.quantile(share, 0.999)),
            "peak_share_max": float(share.max()), "above_cut": int((share > CUT).sum()),
            "grey_levels_min": int(min(levels)), "high_pass_max": float(max(energy))}


def pictures(paths: list[Path], every: int) -> list[dict[str, object]]:
    """Every `every`th film as each kind of picture, side and JPEG quality: what the cue and the guard make of it."""
    from pneumoscan.inference.predictor import Predictor

    predictor = Predictor()
    rows = []
    for kind, n, dither in PICTURES:
        for side in (224, 896):
            for quality in (30, 75, 95):
                shares, levels, energy, passed = [], [], [], 0
                for path in paths[::every]:
                    gray = Image.open(path).convert("L")
                    if side != gray.size[0]:
                        gray = gray.resize((side, side), Image.Resampling.BICUBIC)
                    data = jpeg(tones(gray, n, dither), quality)
                    decoded = Image.open(io.BytesIO(data)).convert("L")
                    shares.append(peak_share(decoded))
                    levels.append(grey_levels(decoded))
                    energy.append(high_pass_energy(np.asarray(decoded)))
                    passed += bool(predictor.predict_bytes(data).in_distribution)
                share = np.array(shares)
                rows.append({"picture": kind, "side": side, "quality": quality, "n": len(shares),
                             "peak_share_min": float(share.min()), "peak_share_median": float(np.median(share)),
                             "above_cut": int((share > CUT).sum()), "grey_levels_median": float(np.median(levels)),
                             "high_pass_min": float(min(energy)), "passes_guard_now": passed})
                print(rows[-1], flush=True)
    return rows


def markdown(r: dict) -> str:
    lines = ["# A few-grey-levels cue for JPEGs, measured on train films only", "", f"`{r['command']}`", "",
             f"Peak share: the share of a JPEG's pixels (decoded at full size) within {BAND} levels of its {PEAKS} "
             f"most common levels; a rule would refuse above {CUT}.", "",
             "## Real films (false refusals)", "",
             "| films | n | median | 99th percentile | 99.9th percentile | max | above the cut | fewest grey levels "
             "| largest high-pass energy |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in r["films"].items():
        lines.append(f"| {name} | {s['films']} | {s['peak_share_median']:.3f} | {s['peak_share_p99']:.3f} | "
                     f"{s['peak_share_p999']:.3f} | {s['peak_share_max']:.3f} | {s['above_cut']} | "
                     f"{s['grey_levels_min']} | {s['high_pass_max']:.2f} |")
    lines += ["", f"## Pictures of every {r['every']}th train film saved as JPEG", "",
              "| picture | side | quality | n | min peak share | median peak share | above the cut | median grey levels "
              "| min high-pass energy | pass the guard now |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in r["pictures"]:
        lines.append(f"| {p['picture']} | {p['side']} | {p['quality']} | {p['n']} | {p['peak_share_min']:.3f} | "
                     f"{p['peak_share_median']:.3f} | {p['above_cut']} | {p['grey_levels_median']:.0f} | "
                     f"{p['high_pass_min']:.2f} | {p['passes_guard_now']} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    return picture_bench_parser(__doc__.split("\n")[0], DEFAULT_DATA, ROOT / "bench" / "results")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train = image_files_under(Path(args.data) / "train")
    sample = image_files_under(ROOT / "sample" / "chest_xray" / "train")
    result = {"command": "PYTHONPATH=src .venv/bin/python bench/few_grey_levels.py " + shlex.join(sys.argv[1:]),
              "every": args.every,
              "films": {"train, as stored": real_films(train), "bundled sample, train": real_films(sample)},
              "pictures": pictures(train, args.every)}
    write_report(args.out, "few_grey_levels", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
