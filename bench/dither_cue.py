"""The guard's dithered-JPEG rule, measured on the train split only (test/ is never read).

Dither energy (`dither_energy`): the mean |pixel - the mean of its 2 x 2 block| of a JPEG decoded at full size, the
pixel-to-pixel grain that dithering adds. Measured on every train film as stored and re-encoded (twice the size,
quality 75; quality 10): false refusals at `DITHER_ENERGY`. Then on pictures made from every Nth train film saved as
JPEG at 224 and 896 px, quality 30, 75 and 95: Floyd-Steinberg dithered to 4 evenly spaced grey levels, to the 4
levels of an adaptive palette (`Image.quantize(4)`, as a GIF-like palette copy is made), to 8 evenly spaced levels,
and to black and white (`convert("1")`): how many the rule catches, and how many the shipped guard passes without
the rule (its other rules and signals) and with it. Last, small films: every train film made smaller (LANCZOS, 40 to
160 px) and saved as JPEG quality 75 and 90, and 4-tone dithered copies of every Nth at those sizes: their grain,
which rises as a film gets smaller, and whether the rule measures them (from `DITHER_MIN_SIDE` px on the shorter
side). Then lossless files, which the dithered rule measures when 8-bit: every train film as 8-bit PNG (as stored,
made smaller and larger, and the pixels of its quality-10 JPEG, as an in-memory array is screened): their dither
energy; and black-and-white (dithered, thresholded) and 4-tone dithered pictures of every Nth as 8-bit PNG, as made,
resized, or the pixels of their JPEG: what the shipped guard made of them before the rule measured lossless files and
now. `--lossless-only` measures that part alone and keeps the rest of the
recorded results.

    PYTHONPATH=src .venv/bin/python bench/dither_cue.py [--data ../shared/data/chest_xray] [--every 20] [--lossless-only]

Writes bench/results/dither_cue.json and bench/results/dither_cue.md.
"""
from __future__ import annotations

import argparse
import io
import shlex
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from _results import GIVE_DATA, image_files_under, picture_bench_parser, recorded_report, write_report

from pneumoscan.inference.ood import DITHER_ENERGY, DITHER_MIN_SIDE, dither_energy, jpeg_cues

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chest_xray"


def jpeg(gray: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    gray.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def even_tones(gray: Image.Image, n: int) -> Image.Image:
    """GRAY Floyd-Steinberg dithered to `n` evenly spaced grey levels."""
    values = np.linspace(0, 255, n).round().astype(int)
    palette = Image.new("P", (1, 1))
    palette.putpalette([int(v) for v in values for _ in range(3)] + [0] * (256 - n) * 3)
    return gray.convert("RGB").quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).convert("L")


def adaptive_tones(gray: Image.Image, n: int) -> Image.Image:
    """GRAY Floyd-Steinberg dithered to the `n` levels of its own adaptive (median cut) palette."""
    return gray.convert("RGB").quantize(palette=gray.quantize(n), dither=Image.Dither.FLOYDSTEINBERG).convert("L")


PICTURES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "4 even tones, dithered": lambda g: even_tones(g, 4),
    "4 adaptive tones, dithered": lambda g: adaptive_tones(g, 4),
    "8 even tones, dithered": lambda g: even_tones(g, 8),
    "black and white, dithered": lambda g: g.convert("1").convert("L"),
}
FILM_ENCODINGS: dict[str, Callable[[Path], bytes]] = {
    "as stored (JPEG, 224 px)": lambda p: p.read_bytes(),
    "JPEG quality 75, 2x size": lambda p: jpeg(_grey(p).resize((448, 448), Image.Resampling.BICUBIC), 75),
    "JPEG quality 10": lambda p: jpeg(_grey(p), 10),
}


def _grey(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("L")


def films(paths: list[Path]) -> dict[str, dict[str, object]]:
    """Dither energy of every film in each encoding: quantiles and false refusals at DITHER_ENERGY."""
    out = {}
    for name, encode in FILM_ENCODINGS.items():
        with ThreadPoolExecutor(max_workers=2) as pool:
            energy = np.array(list(pool.map(lambda p: jpeg_cues(encode(p))[1], paths)))
        top = int(energy.argmax())
        out[name] = {"films": len(paths), "median": float(np.median(energy)), "p99": float(np.quantile(energy, 0.99)),
                     "p999": float(np.quantile(energy, 0.999)), "max": float(energy.max()),
                     "max_film": paths[top].name, "refused": int((energy > DITHER_ENERGY).sum())}
        print(name, out[name], flush=True)
    return out


def pictures(paths: list[Path], every: int) -> list[dict[str, object]]:
    """Every `every`th film as each picture, side and quality: the cue, the rule and the shipped guard."""
    from pneumoscan.inference.predictor import Predictor

    predictor = Predictor(None, backend="onnx")
    rows = []
    for kind, make in PICTURES.items():
        for side in (224, 896):
            for quality in (30, 75, 95):
                energy, before, now, causes = [], 0, 0, Counter()
                for path in paths[::every]:
                    gray = _grey(path)
                    data = jpeg(make(gray.resize((side, side), Image.Resampling.BICUBIC) if side != gray.width
                                     else gray), quality)
                    decoded = predictor.decode(data, path.name)
                    energy.append(decoded.dither)
                    (verdict,) = predictor.decoded_results([path.name], [decoded])
                    (without,) = predictor.decoded_results([path.name], [decoded._replace(dither=0.0)])
                    before += bool(without.in_distribution)
                    now += bool(verdict.in_distribution)
                    if verdict.refused_by is not None:
                        causes[verdict.refused_by] += 1
                e = np.array(energy)
                rows.append({"picture": kind, "side": side, "quality": quality, "n": len(e),
                             "energy_min": float(e.min()), "energy_median": float(np.median(e)),
                             "caught": int((e > DITHER_ENERGY).sum()), "passed_before": before, "passes_now": now,
                             "refused_by": dict(sorted(causes.items()))})
                print(rows[-1], flush=True)
    return rows


SMALL_SIDES = (40, 64, 96, 128, 160)


def _grain(data: bytes) -> float:
    """The dither energy of a JPEG's full decode, whatever its size (`jpeg_cues` measures from DITHER_MIN_SIDE px)."""
    with Image.open(io.BytesIO(data)) as im:
        return dither_energy(np.asarray(im.convert("L")))


def small_sides(paths: list[Path], every: int) -> list[dict[str, object]]:
    """Every film made SIDE px (LANCZOS) and saved as JPEG quality 75 and 90, and 4-tone dithered copies of every
    `every`th: their grain, how many are above the cut, and how many the rule (measuring from DITHER_MIN_SIDE) refuses."""
    rows = []
    for side in SMALL_SIDES:
        small = [_grey(p).resize((side, side), Image.Resampling.LANCZOS) for p in paths]
        for quality in (75, 90):
            for kind, pictures in (("film", small), ("4 even tones, dithered", [even_tones(g, 4) for g in small[::every]])):
                datas = [jpeg(g, quality) for g in pictures]
                grain = np.array([_grain(d) for d in datas])
                refused = sum(bool(jpeg_cues(d)[1] > DITHER_ENERGY) for d in datas)
                rows.append({"picture": kind, "side": side, "quality": quality, "n": len(grain),
                             "min": float(grain.min()), "median": float(np.median(grain)),
                             "p999": float(np.quantile(grain, 0.999)), "max": float(grain.max()),
                             "above_cut": int((grain > DITHER_ENERGY).sum()), "measured": side >= DITHER_MIN_SIDE,
                             "refused": refused})
                print(rows[-1], flush=True)
    return rows


def png(gray: Image.Image) -> bytes:
    buf = io.BytesIO()
    gray.save(buf, "PNG")
    return buf.getvalue()


def _pixels_of(data: bytes) -> Image.Image:
    """The decoded pixels of a file, as an in-memory image."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("L")


_R = Image.Resampling
LOSSLESS_FILMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "8-bit PNG as stored": lambda g: g,
    "8-bit PNG, 128 px (LANCZOS)": lambda g: g.resize((128, 128), _R.LANCZOS),
    "8-bit PNG, 448 px (BICUBIC)": lambda g: g.resize((448, 448), _R.BICUBIC),
    "pixels of its JPEG quality 10, as PNG": lambda g: _pixels_of(jpeg(g, 10)),
}
LOSSLESS_PICTURES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "black and white, dithered": lambda g: g.convert("1").convert("L"),
    "black and white, thresholded": lambda g: g.point(lambda v: 255 * (v >= 128)),
    "4 even tones, dithered": lambda g: even_tones(g, 4),
    "4 adaptive tones, dithered": lambda g: adaptive_tones(g, 4),
}
LOSSLESS_SIZES: dict[str, Callable[[Image.Image, Callable[[Image.Image], Image.Image]], Image.Image]] = {
    "as made, 224 px": lambda g, make: make(g),
    "made, then 448 px (BICUBIC)": lambda g, make: make(g).resize((448, 448), _R.BICUBIC),
    "made, then 160 px (LANCZOS)": lambda g, make: make(g).resize((160, 160), _R.LANCZOS),
    "made, then 128 px (BILINEAR)": lambda g, make: make(g).resize((128, 128), _R.BILINEAR),
    "made at 896 px, then 224 px (LANCZOS)": lambda g, make: make(g.resize((896, 896), _R.BICUBIC)).resize(
        (224, 224), _R.LANCZOS),
    "pixels of its JPEG quality 75": lambda g, make: _pixels_of(jpeg(make(g), 75)),
}


def lossless(paths: list[Path], every: int) -> dict[str, object]:
    """Every film in each lossless form (false refusals), and pictures of every `every`th in each (the guard)."""
    from pneumoscan.inference.predictor import Predictor

    films_out = {}
    for name, make in LOSSLESS_FILMS.items():
        grain = np.array([jpeg_cues(png(make(_grey(p))))[1] for p in paths])
        films_out[name] = {"films": len(paths), "grain_median": float(np.median(grain)),
                           "grain_p999": float(np.quantile(grain, 0.999)), "grain_max": float(grain.max()),
                           "refused": int((grain > DITHER_ENERGY).sum())}
        print(name, films_out[name], flush=True)
    predictor = Predictor(None, backend="onnx")
    rows = []
    for kind, make in LOSSLESS_PICTURES.items():
        for size, resize in LOSSLESS_SIZES.items():
            levels, grains, before, now, causes = [], [], 0, 0, Counter()
            for path in paths[::every]:
                decoded = predictor.decode(png(resize(_grey(path), make)), path.name)
                levels.append(decoded.levels)
                grains.append(decoded.dither)
                (verdict,) = predictor.decoded_results([path.name], [decoded])
                (without,) = predictor.decoded_results([path.name], [decoded._replace(dither=np.nan)])
                before += bool(without.in_distribution)
                now += bool(verdict.in_distribution)
                causes[verdict.refused_by or "passed"] += 1
            rows.append({"picture": kind, "form": size, "n": len(grains), "levels_min": int(min(levels)),
                         "grain_min": float(np.nanmin(grains)) if not np.isnan(grains).all() else float("nan"),
                         "passed_before": before, "passes_now": now,
                         "verdicts": dict(sorted(causes.items()))})
            print(rows[-1], flush=True)
    return {"films": films_out, "pictures": rows}


def markdown(r: dict) -> str:
    lines = ["# The dithered-JPEG rule, measured on train films only", "", f"`{r['command']}`", "",
             f"Dither energy: mean |pixel - mean of its 2 x 2 block| (0-255) of a JPEG decoded at full size (the "
             f"central 512 x 512 pixels at most); the rule refuses above {r['cut']}.", "",
             "## Real films (false refusals)", "",
             "| encoding | films | median | 99th percentile | 99.9th percentile | max | (film) | refused |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in r["films"].items():
        lines.append(f"| {name} | {s['films']} | {s['median']:.2f} | {s['p99']:.2f} | {s['p999']:.2f} | "
                     f"{s['max']:.2f} | {s['max_film']} | {s['refused']} |")
    lines += ["", f"## Dithered pictures of every {r['every']}th train film saved as JPEG", "",
              "| picture | side | quality | n | min energy | median energy | caught by the rule | passed the guard "
              "before | passes now | refused now by |", "|---|---|---|---|---|---|---|---|---|---|"]
    for p in r["pictures"]:
        causes = ", ".join(f"{k} {v}" for k, v in p["refused_by"].items())
        lines.append(f"| {p['picture']} | {p['side']} | {p['quality']} | {p['n']} | {p['energy_min']:.2f} | "
                     f"{p['energy_median']:.2f} | {p['caught']} | {p['passed_before']} | {p['passes_now']} | "
                     f"{causes} |")
    lines += ["", f"## Small films: every train film made smaller (LANCZOS) and saved as JPEG; 4-tone dithered copies "
              f"of every {r['every']}th", "",
              f"Grain: the dither energy of the full decode. The rule measures a JPEG from {r['min_side']} px on its "
              f"shorter side.", "",
              "| picture | side | quality | n | min | median | 99.9th percentile | max | above the cut | measured by "
              "the rule | refused |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in r["small"]:
        lines.append(f"| {p['picture']} | {p['side']} | {p['quality']} | {p['n']} | {p['min']:.2f} | "
                     f"{p['median']:.2f} | {p['p999']:.2f} | {p['max']:.2f} | {p['above_cut']} | "
                     f"{'yes' if p['measured'] else 'no'} | {p['refused']} |")
    if "lossless" in r:
        lines += ["", "## Lossless files: every train film as 8-bit PNG (false refusals)", "",
                  f"`{r.get('lossless_command', r['command'])}`", "",
                  f"Refused: dither energy above {r['cut']} (measured from {r['min_side']} px).", "",
                  "| form | films | median dither energy | 99.9th percentile | max | refused |",
                  "|---|---|---|---|---|---|"]
        for name, s in r["lossless"]["films"].items():
            lines.append(f"| {name} | {s['films']} | {s['grain_median']:.2f} | {s['grain_p999']:.2f} | "
                         f"{s['grain_max']:.2f} | {s['refused']} |")
        lines += ["", f"## Lossless pictures of every {r['every']}th train film, as 8-bit PNG", "",
                  "Passed before: with the dither energy of lossless files unmeasured (NaN), as before the rule measured "
                  "them.", "",
                  "| picture | form | n | fewest grey levels | min dither energy | passed the guard before | passes now "
                  "| verdicts now |", "|---|---|---|---|---|---|---|---|"]
        for p in r["lossless"]["pictures"]:
            verdicts = ", ".join(f"{k} {v}" for k, v in p["verdicts"].items())
            grain = "not measured" if np.isnan(p["grain_min"]) else f"{p['grain_min']:.2f}"
            lines.append(f"| {p['picture']} | {p['form']} | {p['n']} | {p['levels_min']} | {grain} | "
                         f"{p['passed_before']} | {p['passes_now']} | {verdicts} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    parser = picture_bench_parser(__doc__.split("\n")[0], DEFAULT_DATA, ROOT / "bench" / "results")
    parser.add_argument("--lossless-only", action="store_true",
                        help="measure the lossless files alone, keeping the other recorded results")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train = image_files_under(Path(args.data) / "train", advice=GIVE_DATA)
    command = "PYTHONPATH=src .venv/bin/python bench/dither_cue.py " + shlex.join(sys.argv[1:])
    if args.lossless_only:
        result = recorded_report(args.out, "dither_cue", "--lossless-only")
        result.update({"lossless_command": command, "lossless": lossless(train, args.every)})
    else:
        result = {"command": command, "cut": DITHER_ENERGY, "min_side": DITHER_MIN_SIDE, "every": args.every,
                  "films": films(train), "pictures": pictures(train, args.every), "small": small_sides(train, args.every),
                  "lossless": lossless(train, args.every)}
    write_report(args.out, "dither_cue", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
