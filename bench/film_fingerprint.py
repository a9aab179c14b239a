"""Measure the film fingerprint (`pneumoscan.data.fingerprint`) on the train split only (test/ is never read).

* Robustness: N train films, each re-encoded as a user's copy of it would be (JPEG quality 50, PNG, 16-bit DICOM,
  upscaled to 1024 and 2048 px as the original-size Kaggle films are, 2048 x 1600 px, 10 % brighter or darker),
  decoded as evaluate decodes them: how many are recognised as that film (within the rule's distance of its
  fingerprint), and the largest distance.
* False matches: every pair of distinct train files (5,216 films: 13.6 million pairs; byte-identical copies are one
  film), and the pairs of one patient (different films of one child, the hard case): how many pairs the rule would
  call the same film, for a range of distances.
* The same for simpler hashes of the same 128 px decode (mean hash, difference hash, 64-bit DCT hash), for the
  choice; how far the fingerprint moves when the film is decoded at another size than 128 px (why that is fixed);
  and the cost of fingerprinting 1,000 films from a decode a model already made, and with a decode of their own.

    PYTHONPATH=src .venv/bin/python bench/film_fingerprint.py [--data ../shared/data/chest_xray] [--n 300]

Writes bench/results/film_fingerprint.json and bench/results/film_fingerprint.md.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from _results import write_report

from pneumoscan.data.cache import load_image_set
from pneumoscan.data.fingerprint import (
    FILM_MAX_DISTANCE,
    FILM_METHOD,
    FILM_SIZE,
    _dct_basis,
    film_fingerprint,
)
from pneumoscan.data.layout import discover
from pneumoscan.data.patients import patient_id
from pneumoscan.data.preprocess import load_image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "chest_xray"
OTHER_SIZES = (56, 64, 96, 112, 160, 224)


def _cells(gray: np.ndarray, grid: int, width: int | None = None) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(gray)).convert("F")
    return np.asarray(image.resize((width or grid, grid), Image.Resampling.BOX), dtype=np.float64)


def _mean_hash(gray: np.ndarray) -> np.ndarray:
    cells = _cells(gray, 16).ravel()
    return cells > np.median(cells)


def _difference_hash(gray: np.ndarray) -> np.ndarray:
    cells = _cells(gray, 16, 17)
    return (cells[:, 1:] > cells[:, :-1]).ravel()


def _dct_hash_64(gray: np.ndarray) -> np.ndarray:
    basis = _dct_basis()[:8]
    freqs = (basis @ _cells(gray, 32) @ basis.T).ravel()[1:]
    return freqs > np.median(freqs)


def _film_bits(gray: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(film_fingerprint(gray)), dtype=np.uint8))[:255].astype(bool)


HASHES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    f"film fingerprint ({FILM_METHOD}, 255 bits)": _film_bits,
    "mean hash, 16 x 16 cells above their median (256 bits)": _mean_hash,
    "difference hash, 16 x 17 cells, each brighter than its left one (256 bits)": _difference_hash,
    "DCT hash, 8 x 8 lowest frequencies of 32 x 32 cells (63 bits)": _dct_hash_64,
}


def _encode(image: Image.Image, fmt: str, **options: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _dicom16(pixels: np.ndarray) -> bytes:
    """A 16-bit DX DICOM file of the 8-bit film scaled to the full 16-bit range."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.set_pixel_data(pixels.astype(np.uint16) * 257, "MONOCHROME2", 16, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def copies(path: Path) -> dict[str, bytes]:
    """One train film as the copies a user may hold of it."""
    with Image.open(path) as image:
        gray = image.convert("L")
    pixels = np.asarray(gray, dtype=np.float64)

    def scaled(k: float) -> Image.Image:
        return Image.fromarray(np.clip(np.rint(pixels * k), 0, 255).astype(np.uint8))

    return {
        "JPEG quality 50": _encode(gray, "JPEG", quality=50),
        "PNG": _encode(gray, "PNG"),
        "16-bit DICOM": _dicom16(np.asarray(gray)),
        "upscaled to 1024 px, JPEG quality 90": _encode(gray.resize((1024, 1024), Image.Resampling.BICUBIC), "JPEG",
                                                        quality=90),
        "upscaled to 2048 px, PNG": _encode(gray.resize((2048, 2048), Image.Resampling.BICUBIC), "PNG"),
        "upscaled to 2048 x 1600 px, JPEG quality 90": _encode(gray.resize((2048, 1600), Image.Resampling.BICUBIC),
                                                               "JPEG", quality=90),
        "10 % brighter, PNG": _encode(scaled(1.1), "PNG"),
        "10 % darker, PNG": _encode(scaled(0.9), "PNG"),
    }


def distances(query: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Bits differing between each packed row of `query` and each of `known` (len(query) x len(known))."""
    return np.bitwise_count(query[:, None, :] ^ known[None, :, :]).sum(axis=2, dtype=np.int64)


def pair_histograms(packed: np.ndarray, files: list[str], patients: list[str], bits: int) -> tuple[np.ndarray, np.ndarray]:
    """How many pairs of distinct files (other bytes) lie at each distance: all pairs, and pairs of one patient."""
    everyone, same_patient = np.zeros(bits + 1, dtype=np.int64), np.zeros(bits + 1, dtype=np.int64)
    digests, owners, index = np.array(files), np.array(patients), np.arange(len(files))
    for start in range(0, len(packed), 256):
        rows = index[start:start + 256]
        d = distances(packed[rows], packed)
        pair = (rows[:, None] < index[None, :]) & (digests[rows][:, None] != digests[None, :])
        same = pair & (owners[rows][:, None] == owners[None, :])
        everyone += np.bincount(d[pair], minlength=bits + 1)
        same_patient += np.bincount(d[same], minlength=bits + 1)
    return everyone, same_patient


def measure_hash(name: str, fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, picked: np.ndarray,
                 decoded_copies: dict[str, list[np.ndarray]], files: list[str], patients: list[str],
                 cuts: list[int]) -> dict[str, object]:
    """One hash: distances of the copies to their film, and of distinct films to each other."""
    packed = np.packbits(np.array([fn(image) for image in images]), axis=1)
    bits = int(fn(images[0]).size)
    everyone, same_patient = pair_histograms(packed, files, patients, bits)
    own = {kind: np.bitwise_count(np.packbits(np.array([fn(i) for i in decoded]), axis=1) ^ packed[picked])
           .sum(axis=1, dtype=np.int64) for kind, decoded in decoded_copies.items()}
    every_copy = np.concatenate(list(own.values()))
    return {
        "hash": name, "bits": bits, "pairs": int(everyone.sum()), "same_patient_pairs": int(same_patient.sum()),
        "closest_distinct_pair": int(np.argmax(everyone > 0)),
        "closest_same_patient_pair": int(np.argmax(same_patient > 0)),
        "farthest_copy": int(every_copy.max()),
        "farthest_copy_by_kind": {kind: int(d.max()) for kind, d in own.items()},
        "by_cut": [{"cut": cut, "copies_recognised": float(np.mean(every_copy <= cut)),
                    "distinct_pairs_matched": int(everyone[:cut + 1].sum()),
                    "same_patient_pairs_matched": int(same_patient[:cut + 1].sum())} for cut in cuts],
    }


def rule_table(images: np.ndarray, picked: np.ndarray, decoded_copies: dict[str, list[np.ndarray]]
               ) -> list[dict[str, object]]:
    """The rule as evaluate applies it: a copy counts as seen when within FILM_MAX_DISTANCE of any train film; and
    whether its nearest train film is its own."""
    packed = np.array([np.frombuffer(bytes.fromhex(film_fingerprint(i)), dtype=np.uint8) for i in images])
    rows = []
    for kind, decoded in decoded_copies.items():
        query = np.array([np.frombuffer(bytes.fromhex(film_fingerprint(i)), dtype=np.uint8) for i in decoded])
        d = distances(query, packed)
        own = d[np.arange(len(picked)), picked]
        rows.append({"copy": kind, "n": len(picked), "recognised": int((d.min(axis=1) <= FILM_MAX_DISTANCE).sum()),
                     "recognised_as_itself": int((own <= FILM_MAX_DISTANCE).sum()),
                     "nearest_is_itself": int((d.argmin(axis=1) == picked).sum()),
                     "median_distance": float(np.median(own)), "max_distance": int(own.max())})
    return rows


def other_sizes(paths: list[Path], images: np.ndarray) -> list[dict[str, object]]:
    """How far the fingerprint moves when the films are decoded at another size than FILM_SIZE."""
    base = np.array([np.frombuffer(bytes.fromhex(film_fingerprint(i)), dtype=np.uint8) for i in images])
    rows = []
    for size in OTHER_SIZES:
        with ThreadPoolExecutor() as pool:
            marks = list(pool.map(lambda p: film_fingerprint(load_image(p, size)), paths))
        query = np.array([np.frombuffer(bytes.fromhex(m), dtype=np.uint8) for m in marks])
        d = np.bitwise_count(query ^ base).sum(axis=1, dtype=np.int64)
        rows.append({"decoded_at": size, "n": len(paths), "median": float(np.median(d)),
                     "p99": float(np.quantile(d, 0.99)), "max": int(d.max())})
    return rows


def cost(paths: list[Path], images: np.ndarray) -> dict[str, float]:
    """Seconds to fingerprint the films from a decode already made (a 128 px model's), and with their own decode
    (any other model), one thread each."""
    started = time.perf_counter()
    for image in images:
        film_fingerprint(image)
    reused = time.perf_counter() - started
    started = time.perf_counter()
    for path in paths:
        film_fingerprint(load_image(path, FILM_SIZE))
    return {"films": len(paths), "from_the_model_decode_s": round(reused, 3),
            "with_own_decode_s": round(time.perf_counter() - started, 3)}


def markdown(r: dict) -> str:
    lines = ["# Film fingerprints, measured on train films only", "", f"`{r['command']}`", "",
             f"{r['n_train']} train films ({r['n_distinct']} distinct files), decoded at {r['film_size']} px; "
             f"{r['n_copies']} of them re-encoded. The rule: the same film when at most {r['max_distance']} of the "
             f"bits differ ({r['method']}). {r['copies_with_a_twin']} of the re-encoded films have a byte-identical "
             "copy in train/, which ties with them for the nearest film.", "",
             "## The rule on copies of train films (the nearest of all train films, as evaluate looks them up)", "",
             "| copy | films | recognised | recognised as itself | nearest is itself | median distance | max distance |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['copy']} | {t['n']} | {t['recognised']} | {t['recognised_as_itself']} | {t['nearest_is_itself']} | "
              f"{t['median_distance']:.0f} | {t['max_distance']} |" for t in r["rule"]]
    lines += ["", f"Distinct train films within {r['max_distance']} bits of each other (called the same film): "
              f"{r['false_pairs']} of {r['pairs']:,} pairs ({r['false_same_patient_pairs']} of the "
              f"{r['same_patient_pairs']:,} pairs of one patient); the closest pair differs in "
              f"{r['closest_distinct_pair']} bits, the closest of one patient in {r['closest_same_patient_pair']}.", "",
              "## The choice: hashes of the same decode", "",
              "Farthest copy: the largest distance of any copy above to its own film. Closest pair: the smallest "
              "distance between distinct films. A rule separates them only when the first is below the second.", "",
              "| hash | bits | farthest copy | closest distinct pair | closest pair of one patient |",
              "|---|---|---|---|---|"]
    lines += [f"| {h['hash']} | {h['bits']} | {h['farthest_copy']} | {h['closest_distinct_pair']} | "
              f"{h['closest_same_patient_pair']} |" for h in r["hashes"]]
    lines += ["", "By distance cut (copies recognised as their own film; pairs of distinct films matched):", "",
              "| hash | cut | copies recognised | distinct pairs matched | of one patient |", "|---|---|---|---|---|"]
    lines += [f"| {h['hash']} | {c['cut']} | {c['copies_recognised']:.4f} | {c['distinct_pairs_matched']} | "
              f"{c['same_patient_pairs_matched']} |" for h in r["hashes"] for c in h["by_cut"]]
    lines += ["", f"## Decoded at another size than {r['film_size']} px (bits that move; why the size is fixed)", "",
              "| decoded at | films | median | 99th percentile | max |", "|---|---|---|---|---|"]
    lines += [f"| {t['decoded_at']} | {t['n']} | {t['median']:.0f} | {t['p99']:.0f} | {t['max']} |"
              for t in r["other_sizes"]]
    c = r["cost"]
    lines += ["", "## Cost", "", f"{c['films']} train films, one thread: {c['from_the_model_decode_s']:.2f} s from the "
              f"decode a {r['film_size']} px model already made (evaluate of the shipped model), "
              f"{c['with_own_decode_s']:.2f} s with a decode of their own (a model of another input size).",
              f"Whole run: {r['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="data folder with train/ (test/ is not read)")
    parser.add_argument("--n", type=int, default=300, help="train films re-encoded for the robustness table")
    parser.add_argument("--n-sizes", type=int, default=500, help="train films decoded at other sizes")
    parser.add_argument("--n-cost", type=int, default=1000, help="train films timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.time()
    image_set = load_image_set(discover(args.data)["train"], FILM_SIZE, desc="decoding train")
    images, paths = np.asarray(image_set.images), [s.path for s in image_set.samples]
    files = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    patients = [patient_id(p) for p in paths]
    rng = np.random.default_rng(args.seed)
    picked = np.sort(rng.choice(len(paths), args.n, replace=False))

    def decode_copies(index: int) -> dict[str, np.ndarray]:
        return {kind: load_image(data, FILM_SIZE) for kind, data in copies(paths[index]).items()}

    with ThreadPoolExecutor() as pool:
        per_film = list(pool.map(decode_copies, picked))
    decoded_copies = {kind: [d[kind] for d in per_film] for kind in per_film[0]}
    cuts = sorted({0, 4, 8, 12, 16, 20, FILM_MAX_DISTANCE, 28, 32, 36, 40})
    hashes = [measure_hash(name, fn, images, picked, decoded_copies, files, patients, cuts) for name, fn in HASHES.items()]
    film = hashes[0]
    at_rule = next(c for c in film["by_cut"] if c["cut"] == FILM_MAX_DISTANCE)
    result = {
        "command": " ".join(["PYTHONPATH=src .venv/bin/python bench/film_fingerprint.py",
                             shlex.join(sys.argv[1:] if argv is None else argv)]).strip(),
        "method": FILM_METHOD, "film_size": FILM_SIZE, "max_distance": FILM_MAX_DISTANCE, "n_train": len(paths),
        "n_distinct": len(set(files)), "n_copies": args.n,
        "copies_with_a_twin": sum(files.count(files[i]) > 1 for i in picked), "rule": rule_table(images, picked, decoded_copies),
        "pairs": film["pairs"], "same_patient_pairs": film["same_patient_pairs"],
        "false_pairs": at_rule["distinct_pairs_matched"], "false_same_patient_pairs": at_rule["same_patient_pairs_matched"],
        "closest_distinct_pair": film["closest_distinct_pair"],
        "closest_same_patient_pair": film["closest_same_patient_pair"], "hashes": hashes,
        "other_sizes": other_sizes([paths[i] for i in picked[:args.n_sizes]] if args.n_sizes <= args.n else
                                   paths[:args.n_sizes], images[picked[:args.n_sizes]] if args.n_sizes <= args.n
                                   else images[:args.n_sizes]),
        "cost": cost(paths[:args.n_cost], images[:args.n_cost]),
    }
    result["seconds"] = round(time.time() - started, 1)
    write_report(args.out, "film_fingerprint", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
