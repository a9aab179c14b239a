"""The guard's posterised-JPEG rule, measured on train films only (test/ is never read).

Peak excess (`peak_excess`): the share of a JPEG's pixels, decoded at full size, in sharp peaks of its histogram (each
level's count above twice the mean of the 17 levels around it, after averaging over the JPEG's own DC step, whose
comb is the encoder's). Measured on every train film and the bundled sample's train films as stored, re-encoded at
quality 10 to 95 and at twice the size (quality 75): false refusals at `PEAK_EXCESS`. Then pictures made from every
Nth train film at 224 and 896 px, saved as JPEG quality 30, 75 and 95: posterised (no dither) to the 4 or 6 levels of
an adaptive palette (`Image.quantize`) or to 4, 8 or 16 evenly spaced levels; Floyd-Steinberg dithered to 4 adaptive
or 8 even levels; and the film itself re-encoded (the control): how often the shipped model's label changes from the
original film's (all pictures, and those the guard passed without the rule), how many the guard passed before the
rule and passes now, and what refuses them. Last, the guard's time per film (decode and screen, as stored) with and
without the peak excess, median over every Nth film. Also real films with a flat border (`--framed-only` measures
that part alone, keeping the other recorded results): every Nth train film padded top and bottom, or framed on all
four sides, by a flat grey level (2, 5, 20, 40, 128, 250) over 23 % or 33 % of the image, saved as JPEG quality 30 to
95: the largest peak excess, with its flat edges left out (as the guard does) and over the whole image (as before),
false refusals by each, and the largest two-tone share and dither energy (their rules' false refusals), and the
shipped guard's verdicts on two of those borders; the posterised pictures' peak excess both ways (caught by the
rule); and borders that are not one flat run of lines from the edge (a 1-px line or a noisy row outside a letterbox,
a letterbox in a pillarbox of another level, a noisy frame, round or cut-corner collimator masks) on the films and on
their 4- and 8-tone posterised copies, at JPEG quality 30 and 90: over the cut both ways.

    PYTHONPATH=src .venv/bin/python bench/few_grey_levels.py [--data ../shared/data/chest_xray] [--every 20]
        [--framed-only]

Writes bench/results/few_grey_levels.json and bench/results/few_grey_levels.md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from _results import GIVE_DATA, image_files_under, picture_bench_parser, recorded_report, write_report

from pneumoscan.data import file_cues
from pneumoscan.inference.ood import DITHER_ENERGY, PEAK_EXCESS, TWO_TONE_SHARE, jpeg_cues

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chest_xray"
QUALITIES = (30, 75, 95)


def jpeg(gray: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    gray.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def even_tones(gray: Image.Image, n: int, dither: bool) -> Image.Image:
    """GRAY reduced to `n` evenly spaced grey levels, Floyd-Steinberg dithered or not (posterised)."""
    values = np.linspace(0, 255, n).round().astype(int)
    palette = Image.new("P", (1, 1))
    palette.putpalette([int(v) for v in values for _ in range(3)] + [0] * (256 - n) * 3)
    mode = Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE
    return gray.convert("RGB").quantize(palette=palette, dither=mode).convert("L")


def adaptive_tones(gray: Image.Image, n: int, dither: bool) -> Image.Image:
    """GRAY reduced to the `n` levels of its own adaptive (median cut) palette, dithered or not."""
    mode = Image.Dither.FLOYDSTEINBERG if dither else Image.Dither.NONE
    return gray.convert("RGB").quantize(palette=gray.quantize(n), dither=mode).convert("L")


PICTURES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "film re-encoded (control)": lambda g: g,
    "4 adaptive tones, posterised": lambda g: adaptive_tones(g, 4, False),
    "6 adaptive tones, posterised": lambda g: adaptive_tones(g, 6, False),
    "4 even tones, posterised": lambda g: even_tones(g, 4, False),
    "8 even tones, posterised": lambda g: even_tones(g, 8, False),
    "16 even tones, posterised": lambda g: even_tones(g, 16, False),
    "4 adaptive tones, dithered": lambda g: adaptive_tones(g, 4, True),
    "8 even tones, dithered": lambda g: even_tones(g, 8, True),
}
FILM_ENCODINGS: dict[str, Callable[[Path, Image.Image], bytes]] = {
    "as stored (JPEG, 224 px)": lambda p, g: p.read_bytes(),
    **{f"JPEG quality {q}": (lambda q: lambda p, g: jpeg(g, q))(q) for q in (10, 30, 50, 75, 95)},
    "JPEG quality 75, 2x size": lambda p, g: jpeg(g.resize((2 * g.width, 2 * g.height), Image.Resampling.BICUBIC), 75),
}


def _grey(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("L")


def films(paths: list[Path]) -> dict[str, dict[str, object]]:
    """Peak excess of every film in each encoding: quantiles and false refusals at PEAK_EXCESS."""
    excess = {name: [] for name in FILM_ENCODINGS}
    for path in paths:
        gray = _grey(path)
        for name, encode in FILM_ENCODINGS.items():
            excess[name].append(jpeg_cues(encode(path, gray))[2])
    out = {}
    for name, values in excess.items():
        e = np.array(values)
        out[name] = {"films": len(e), "median": float(np.median(e)), "p999": float(np.quantile(e, 0.999)),
                     "max": float(e.max()), "max_film": paths[int(e.argmax())].name, "refused": int((e > PEAK_EXCESS).sum())}
        print(name, out[name], flush=True)
    return out


def pictures(paths: list[Path], every: int) -> list[dict[str, object]]:
    """Every `every`th film as each picture, side and quality: label changes, the cue, the rule and the shipped guard."""
    from pneumoscan.inference.predictor import Predictor

    predictor = Predictor(None, backend="onnx")
    chosen = paths[::every]
    originals = predictor.predict_images(np.stack([predictor.decode(p.read_bytes(), p.name).image for p in chosen]))
    original_labels = np.array([predictor.label_for(float(p)) for p in originals])
    rows = []
    for kind, make in PICTURES.items():
        for side in (224, 896):
            made = [make(g if side == g.width else g.resize((side, side), Image.Resampling.BICUBIC))
                    for g in map(_grey, chosen)]
            for quality in QUALITIES:
                excess, images, before, now, causes = [], [], [], 0, Counter()
                for path, picture in zip(chosen, made):
                    decoded = predictor.decode(jpeg(picture, quality), path.name)
                    excess.append(decoded.peaks)
                    images.append(decoded.image)
                    (verdict,) = predictor.decoded_results([path.name], [decoded])
                    (without,) = predictor.decoded_results([path.name], [decoded._replace(peaks=0.0)])
                    before.append(bool(without.in_distribution))
                    now += bool(verdict.in_distribution)
                    causes[verdict.refused_by or "passed"] += 1
                probs = predictor.predict_images(np.stack(images))
                flipped = np.array([predictor.label_for(float(p)) for p in probs]) != original_labels
                e, passed = np.array(excess), np.array(before)
                rows.append({"picture": kind, "side": side, "quality": quality, "n": len(e),
                             "flips": int(flipped.sum()), "flips_passed_before": int((flipped & passed).sum()),
                             "mean_abs_change": float(np.abs(probs - originals).mean()),
                             "excess_min": float(e.min()), "excess_median": float(np.median(e)),
                             "caught": int((e > PEAK_EXCESS).sum()), "passed_before": int(passed.sum()),
                             "passes_now": now, "verdicts": dict(sorted(causes.items()))})
                print(rows[-1], flush=True)
    return rows


def guard_time(paths: list[Path]) -> dict[str, float]:
    """Median seconds per film of decoding and screening it (shipped model, ONNX), with and without the peak
    excess (`file_cues.peak_excess` replaced by a constant), and of the peak excess alone."""
    from pneumoscan.inference.predictor import Predictor

    predictor = Predictor(None, backend="onnx")
    datas = [p.read_bytes() for p in paths]

    def per_film() -> float:
        times = []
        for data in datas:
            start = time.perf_counter()
            predictor.decoded_results(["film"], [predictor.decode(data, "film")])
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    real = file_cues.peak_excess
    per_film()  # warm-up
    with_rule = per_film()
    file_cues.peak_excess = lambda histogram, step=1: 0.0
    try:
        without = per_film()
    finally:
        file_cues.peak_excess = real
    with_again = per_film()
    histograms = [_grey(p).histogram() for p in paths]
    alone = []
    for histogram in histograms:
        start = time.perf_counter()
        real(histogram, 1)
        alone.append(time.perf_counter() - start)
    return {"films": len(paths), "with_rule_s": min(with_rule, with_again), "without_rule_s": without,
            "peak_excess_s": float(np.median(alone))}


BORDER_LEVELS = (2, 5, 20, 40, 128, 250)
BORDER_SHARES = (0.23, 0.33)
BORDER_QUALITIES = (30, 50, 75, 95)


def bordered(gray: Image.Image, level: int, share: float, frame: bool) -> Image.Image:
    """GRAY with a flat border of grey `level` making `share` of the result: padded top and bottom (a letterbox),
    or on all four sides (`frame`)."""
    w, h = gray.size
    if frame:
        scale = (1 - share) ** -0.5
        size = (round(w * scale), round(h * scale))
    else:
        size = (w, round(h / (1 - share)))
    out = Image.new("L", size, level)
    out.paste(gray, ((size[0] - w) // 2, (size[1] - h) // 2))
    return out


@contextlib.contextmanager
def whole_image_excess():
    """Within it, `jpeg_cues` measures the peak excess over the whole image, its edges too (as before)."""
    real = file_cues._picture_excess
    file_cues._picture_excess = lambda gray, histogram, step: file_cues.peak_excess(histogram, step)
    try:
        yield
    finally:
        file_cues._picture_excess = real


def both_excesses(data: bytes) -> tuple[tuple[float, float, float], float]:
    """`jpeg_cues` of a JPEG and its peak excess over the whole image."""
    cues = jpeg_cues(data)
    with whole_image_excess():
        return cues, jpeg_cues(data)[2]


def framed_films(paths: list[Path], every: int) -> list[dict[str, object]]:
    """Every `every`th film with each flat border at each quality: its largest cues and false refusals."""
    grays = [_grey(p) for p in paths[::every]]
    rows = []
    for frame in (False, True):
        for share in BORDER_SHARES:
            for level in BORDER_LEVELS:
                now, whole, tones, grain = [], [], [], []
                for gray in grays:
                    picture = bordered(gray, level, share, frame)
                    for quality in BORDER_QUALITIES:
                        (tone, energy, excess), before = both_excesses(jpeg(picture, quality))
                        now.append(excess), whole.append(before), tones.append(tone), grain.append(energy)
                rows.append({"border": "framed" if frame else "padded top and bottom", "share": share, "level": level,
                             "n": len(now), "excess_max": max(now), "refused": sum(e > PEAK_EXCESS for e in now),
                             "whole_excess_max": max(whole), "whole_refused": sum(e > PEAK_EXCESS for e in whole),
                             "two_tone_max": max(tones), "two_tone_refused": sum(t > TWO_TONE_SHARE for t in tones),
                             "dither_max": float(np.nanmax(grain)),
                             "dither_refused": sum(g > DITHER_ENERGY for g in grain)})
                print(rows[-1], flush=True)
    return rows


def _with_line(picture: Image.Image, top: bool = False) -> Image.Image:
    """PICTURE with a 1-px line of grey 200: over its whole top row, or the first third of its bottom row."""
    pixels = np.array(picture)
    if top:
        pixels[0] = 200
    else:
        pixels[-1, : pixels.shape[1] // 3] = 200
    return Image.fromarray(pixels)


def _noise_row(picture: Image.Image) -> Image.Image:
    """PICTURE with its bottom row noise of grey 120 to 136."""
    pixels = np.array(picture)
    pixels[-1] = np.random.default_rng(0).integers(120, 137, pixels.shape[1])
    return Image.fromarray(pixels)


def _pillarbox(picture: Image.Image, level: int = 0, width: int = 20) -> Image.Image:
    out = Image.new("L", (picture.width + 2 * width, picture.height), level)
    out.paste(picture, (width, 0))
    return out


def _on_top(gray: Image.Image, level: int, share: float = 1 / 3) -> Image.Image:
    """GRAY padded with grey `level` above it alone, over `share` of the result."""
    out = Image.new("L", (gray.width, round(gray.height / (1 - share))), level)
    out.paste(gray, (0, out.height - gray.height))
    return out


def _noisy_frame(gray: Image.Image, level: int, noise: float, share: float = 0.23) -> Image.Image:
    """GRAY in a frame of grey `level` over `share` of the result, with noise of standard deviation `noise`."""
    frame = np.asarray(bordered(gray, level, share, True), dtype=np.float64)
    out = Image.fromarray(np.clip(frame + np.random.default_rng(0).normal(0, noise, frame.shape), 0, 255).round()
                          .astype(np.uint8))
    out.paste(gray, ((out.width - gray.width) // 2, (out.height - gray.height) // 2))
    return out


def _mask(gray: Image.Image, level: int, corners: float = 0.0) -> Image.Image:
    """GRAY outside a collimator's opening set to grey `level`: round, or cut at the corners by `corners` of a side."""
    from PIL import ImageDraw

    w, h = gray.size
    opening = Image.new("L", gray.size, 0)
    if corners:
        c = round(corners * min(w, h))
        ImageDraw.Draw(opening).polygon([(c, 0), (w - c, 0), (w, c), (w, h - c), (w - c, h), (c, h), (0, h - c),
                                         (0, c)], fill=255)
    else:
        ImageDraw.Draw(opening).ellipse((0, 0, w - 1, h - 1), fill=255)
    out = Image.new("L", gray.size, level)
    out.paste(gray, (0, 0), opening)
    return out


# borders that are not one flat run of lines from the edge (the flat-edge trim alone missed them)
OTHER_BORDERS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "letterbox 128 over 33 %, a 1-px line (200) over a third of the bottom row":
        lambda g: _with_line(bordered(g, 128, 1 / 3, False)),
    "letterbox 128 over 33 %, its bottom row noise (120-136)": lambda g: _noise_row(bordered(g, 128, 1 / 3, False)),
    "letterbox 40 over 33 % in a 20-px pillarbox of 0": lambda g: _pillarbox(bordered(g, 40, 1 / 3, False)),
    "padded above alone by 128 over 33 %, a 1-px line (200) along the top":
        lambda g: _with_line(_on_top(g, 128), top=True),
    "frame 128 over 23 %, a 1-px line (200) along the top":
        lambda g: _with_line(bordered(g, 128, 0.23, True), top=True),
    "frame 128 over 23 %, noise of standard deviation 1": lambda g: _noisy_frame(g, 128, 1.0),
    "frame 128 over 23 %, noise of standard deviation 2": lambda g: _noisy_frame(g, 128, 2.0),
    "frame 40 over 23 %, noise of standard deviation 3": lambda g: _noisy_frame(g, 40, 3.0),
    "round collimator mask of 40": lambda g: _mask(g, 40),
    "round collimator mask of 128 in a frame of 20 over 23 %": lambda g: bordered(_mask(g, 128), 20, 0.23, True),
    "collimator mask of 128 cutting 30 % corners": lambda g: _mask(g, 128, corners=0.3),
}
OTHER_QUALITIES = (30, 90)


def other_borders(paths: list[Path], every: int) -> list[dict[str, object]]:
    """Every `every`th film with each of OTHER_BORDERS, and its 4- and 8-tone posterised copies with it (224 px,
    the borders made after posterising): films over the cut, as the guard measures and over the whole image."""
    grays = [_grey(p) for p in paths[::every]]
    kinds = {"film": lambda g: g, "4 adaptive tones, posterised": PICTURES["4 adaptive tones, posterised"],
             "8 even tones, posterised": PICTURES["8 even tones, posterised"]}
    made = {kind: [make(g) for g in grays] for kind, make in kinds.items()}
    rows = []
    for border, make in OTHER_BORDERS.items():
        for kind, pictures_ in made.items():
            for quality in OTHER_QUALITIES:
                pairs = [both_excesses(jpeg(make(picture), quality)) for picture in pictures_]
                now = [c[2] for c, _ in pairs]
                rows.append({"border": border, "picture": kind, "quality": quality, "n": len(pairs),
                             "over": sum(e > PEAK_EXCESS for e in now), "max": max(now), "min": min(now),
                             "whole_over": sum(w > PEAK_EXCESS for _, w in pairs)})
                print(rows[-1], flush=True)
    return rows


BORDER_VERDICTS = ((5, 0.23, False, 90), (128, 0.23, True, 75))  # (level, share, framed, quality)


def framed_verdicts(paths: list[Path], every: int) -> list[dict[str, object]]:
    """Every `every`th film with each border of BORDER_VERDICTS: the shipped guard's verdicts."""
    from pneumoscan.inference.predictor import Predictor

    predictor = Predictor(None, backend="onnx")
    rows = []
    for level, share, frame, quality in BORDER_VERDICTS:
        causes = Counter()
        for path in paths[::every]:
            decoded = predictor.decode(jpeg(bordered(_grey(path), level, share, frame), quality), path.name)
            (verdict,) = predictor.decoded_results([path.name], [decoded])
            causes[verdict.refused_by or "passed"] += 1
        rows.append({"border": "framed" if frame else "padded top and bottom", "share": share, "level": level,
                     "quality": quality, "verdicts": dict(sorted(causes.items()))})
        print(rows[-1], flush=True)
    return rows


def posterised_both_ways(paths: list[Path], every: int) -> list[dict[str, object]]:
    """Every `every`th film as each picture, side and quality: caught by the rule, flat edges left out and not."""
    chosen = [_grey(p) for p in paths[::every]]
    rows = []
    for kind, make in PICTURES.items():
        for side in (224, 896):
            made = [make(g if side == g.width else g.resize((side, side), Image.Resampling.BICUBIC)) for g in chosen]
            for quality in QUALITIES:
                pairs = [both_excesses(jpeg(picture, quality)) for picture in made]
                rows.append({"picture": kind, "side": side, "quality": quality, "n": len(pairs),
                             "caught": sum(c[2] > PEAK_EXCESS for c, _ in pairs),
                             "whole_caught": sum(w > PEAK_EXCESS for _, w in pairs)})
                print(rows[-1], flush=True)
    return rows


def framed_markdown(r: dict) -> list[str]:
    """The flat-border part of the report (empty when not measured)."""
    if "framed" not in r:
        return []
    lines = ["", f"## Real films with a flat border (every {r['every']}th train film, JPEG quality "
             f"{', '.join(map(str, BORDER_QUALITIES))})", "", f"`{r['framed_command']}`", "",
             "Peak excess as the guard measures it (flat edge rows and columns, then the levels of peaks along the edges "
             "alone, left out) and over the whole image (before); the two-tone and dithered rules' cues on the same "
             "files.", "",
             "| border | share | level | n | max excess | refused | max excess, whole image | refused so | "
             "max two-tone share | refused | max dither energy | refused |", "|---" * 12 + "|"]
    for b in r["framed"]:
        lines.append(f"| {b['border']} | {b['share']:.0%} | {b['level']} | {b['n']} | {b['excess_max']:.3f} | "
                     f"{b['refused']} | {b['whole_excess_max']:.3f} | {b['whole_refused']} | {b['two_tone_max']:.3f} | "
                     f"{b['two_tone_refused']} | {b['dither_max']:.2f} | {b['dither_refused']} |")
    lines += ["", "The shipped guard's verdicts on some of them:", "",
              "| border | share | level | quality | verdicts |", "|---|---|---|---|---|"]
    for v in r["framed_verdicts"]:
        verdicts = ", ".join(f"{k} {n}" for k, n in v["verdicts"].items())
        lines.append(f"| {v['border']} | {v['share']:.0%} | {v['level']} | {v['quality']} | {verdicts} |")
    lines += ["", "Posterised and dithered pictures (as above), caught by the rule as the guard measures and over "
              "the whole image:", "", "| picture | side | quality | n | caught | caught, whole image |",
              "|---|---|---|---|---|---|"]
    for p in r["posterised_both_ways"]:
        lines.append(f"| {p['picture']} | {p['side']} | {p['quality']} | {p['n']} | {p['caught']} | "
                     f"{p['whole_caught']} |")
    if "other_borders" in r:
        lines += ["", "Borders that are not one flat run of lines from the edge, on the films and their posterised "
                  "copies (224 px; the border made after posterising): over the cut as the guard measures (max for the "
                  "films, min for the copies) and over the whole image.", "",
                  "| border | picture | quality | n | over the cut | max | min | over, whole image |",
                  "|---|---|---|---|---|---|---|---|"]
        for o in r["other_borders"]:
            lines.append(f"| {o['border']} | {o['picture']} | {o['quality']} | {o['n']} | {o['over']} | "
                         f"{o['max']:.3f} | {o['min']:.3f} | {o['whole_over']} |")
    return lines


def markdown(r: dict) -> str:
    t = r["time"]
    lines = ["# The posterised-JPEG rule, measured on train films only", "", f"`{r['command']}`", "",
             f"Peak excess: the share of a JPEG's pixels (decoded at full size) in sharp peaks of its histogram; the "
             f"rule refuses above {r['cut']}.", "",
             "## Real films (false refusals)", "",
             "| films | encoding | n | median | 99.9th percentile | max | (film) | refused |",
             "|---|---|---|---|---|---|---|---|"]
    for group, rows in r["films"].items():
        for name, s in rows.items():
            lines.append(f"| {group} | {name} | {s['films']} | {s['median']:.3f} | {s['p999']:.3f} | {s['max']:.3f} | "
                         f"{s['max_film']} | {s['refused']} |")
    lines += ["", f"## Pictures of every {r['every']}th train film saved as JPEG", "",
              "Label changes: the shipped model's label of the picture against the original film's (all pictures; "
              "those the guard passed before the rule). Mean |change|: of P(pneumonia).", "",
              "| picture | side | quality | n | label changes | of those passed before | mean abs change | min excess "
              "| median excess | caught by the rule | passed the guard before | passes now | verdicts now |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in r["pictures"]:
        verdicts = ", ".join(f"{k} {v}" for k, v in p["verdicts"].items())
        lines.append(f"| {p['picture']} | {p['side']} | {p['quality']} | {p['n']} | {p['flips']} | "
                     f"{p['flips_passed_before']} | {p['mean_abs_change']:.3f} | {p['excess_min']:.3f} | "
                     f"{p['excess_median']:.3f} | {p['caught']} | {p['passed_before']} | {p['passes_now']} | "
                     f"{verdicts} |")
    lines += ["", f"## The guard's time per film (decode and screen, as stored; median over {t['films']} films)", "",
              "| with the rule | without it (peak excess a constant) | the peak excess alone |", "|---|---|---|",
              f"| {t['with_rule_s'] * 1e3:.2f} ms | {t['without_rule_s'] * 1e3:.2f} ms | "
              f"{t['peak_excess_s'] * 1e6:.0f} µs |"]
    lines += framed_markdown(r)
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark."""
    parser = picture_bench_parser(__doc__.split("\n")[0], DEFAULT_DATA, ROOT / "bench" / "results")
    parser.add_argument("--framed-only", action="store_true",
                        help="measure the films with a flat border alone, keeping the other recorded results")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train = image_files_under(Path(args.data) / "train", advice=GIVE_DATA)
    sample = image_files_under(ROOT / "sample" / "chest_xray" / "train",
                               advice="the bundled sample ships with the project: restore it with `git checkout -- sample`")
    command = "PYTHONPATH=src .venv/bin/python bench/few_grey_levels.py " + shlex.join(sys.argv[1:])
    if args.framed_only:
        result = recorded_report(args.out, "few_grey_levels", "--framed-only")
    else:
        result = {"command": command, "cut": PEAK_EXCESS, "every": args.every,
                  "films": {"train": films(train), "bundled sample, train": films(sample)},
                  "time": guard_time(train[::args.every]), "pictures": pictures(train, args.every)}
    result.update({"framed_command": command, "framed": framed_films(train, args.every),
                   "framed_verdicts": framed_verdicts(train, args.every),
                   "posterised_both_ways": posterised_both_ways(train, args.every),
                   "other_borders": other_borders(train, args.every)})
    write_report(args.out, "few_grey_levels", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
