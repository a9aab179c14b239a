"""Record the training-film fingerprints in a model that predates them: the byte fingerprints (runs record them
since commit ebe49b0) and the film fingerprints of the decoded films (since the film fingerprint; the shipped model
was trained before both).

    python bench/record_fingerprints.py [MODEL] --data ../shared/data/chest_xray

For a model whose validation was carved from `train/` (the recipe's default), the films it trained or validated
on are exactly the readable images of `DATA/train`; the script refuses when their count differs from the
counts the artifact records, or when byte fingerprints it already records are not those of these films. Only the
metadata changes: the weights are copied bit for bit (checked), and the
model's chest X-ray guard is re-keyed to the new file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from _rewrite import rewrite_artifact

from pneumoscan.artifact import load_artifact, resolve_model_path
from pneumoscan.data.fingerprint import FILM_METHOD, film_record, fingerprints
from pneumoscan.data.layout import evaluation_samples


def build_parser() -> argparse.ArgumentParser:
    """The command line of this benchmark (tests/test_docs.py checks the documented commands against it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", default=None, help="run folder or .safetensors (default: the shipped model)")
    parser.add_argument("--data", default="../shared/data/chest_xray")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    path = resolve_model_path(args.model)
    model, meta = load_artifact(path)
    recorded = meta.training.get("fingerprints")
    if recorded and meta.training.get("film_fingerprint_method") == FILM_METHOD:
        raise SystemExit(f"{path}: already records {len(recorded)} fingerprints and "
                         f"{len(meta.training['film_fingerprints'])} film fingerprints")
    config = meta.training.get("config", {})
    if config.get("use_given_val") or config.get("max_images"):
        raise SystemExit(f"{path}: trained on a given val/ split or a subset; its films are not just DATA/train")
    _, samples = evaluation_samples(args.data, "train")
    marks = [m for m in fingerprints(s.path for s in samples) if m]
    counts = meta.training["data"]
    expected = sum(n for split in ("train", "val") for c, n in counts[split].items() if c != "patients")
    if len(marks) != expected:
        raise SystemExit(f"{args.data}/train: {len(marks)} readable films, the model records {expected}; not its data")
    if recorded and set(recorded) != set(marks):
        raise SystemExit(f"{args.data}/train: its files are not those whose fingerprints the model records")
    films = film_record([s.path for s in samples])
    meta.training["fingerprints"] = sorted(set(marks))
    meta.training.update(films)
    done = rewrite_artifact(Path(path), model, meta)
    print(f"{path}: {len(meta.training['fingerprints'])} fingerprints and {len(films['film_fingerprints'])} film "
          f"fingerprints of {len(marks)} films recorded; {done}")


if __name__ == "__main__":
    main()
