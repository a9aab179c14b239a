"""CLI hooks: `pneumoscan train` trains a classifier; `pneumoscan ensemble` combines trained runs into one model;
`pneumoscan pretrain` learns starting weights from the training images without their labels."""
from __future__ import annotations

import argparse
from pathlib import Path

from pneumoscan.data.cache_commands import add_cache_dir_arg
from pneumoscan.training.config import MAX_IMAGE_SIZE

IMAGE_SIZE_HELP = f"input size in pixels, 16 to {MAX_IMAGE_SIZE} (default: the model's own)"


def print_validation(path: Path) -> None:
    """The artifact's path and its validation figures at the stored threshold, with the images they are measured
    on (on a small site set, 12 films give an AUC that the next run can move by 0.2)."""
    from pneumoscan.artifact import read_meta

    meta = read_meta(path)
    val = meta.val_metrics
    print(f"model: {path}")
    print(f"validation: AUC {val['roc_auc']['value']:.4f}  recall {val['recall']['value']:.4f}  "
          f"specificity {val['specificity']['value']:.4f}  at threshold {meta.threshold:.4f} "
          f"(target recall {meta.target_recall}); {val['n']} images ({val['n_negative']} NORMAL, "
          f"{val['n_positive']} PNEUMONIA)")


def print_split(run: Path, data: str | None = None, resumed: bool = False) -> None:
    """The run's split from its split.json: images and patients trained and validated on, and where the patients
    were read ('--patient-key auto (79 by DICOM PatientID)'), so a DICOM set's user sees its PatientIDs used; how
    many unreadable files were skipped; and, when validation was carved from train while `data` has a val/ folder
    (a manifest val rows), that they were not used and how many they are (as split.json recorded them when the run
    started); for a `resumed` run, which keeps its split, that a new run with --use-given-val would use them."""
    import json

    from pneumoscan.data.patients import keys_read
    from pneumoscan.errors import counted

    try:
        record = json.loads((run / "split.json").read_text())
        train, val = (record["counts"][name] for name in ("train", "val"))
        images = [c["NORMAL"] + c["PNEUMONIA"] for c in (train, val)]
        line = (f"split: {images[0]} training images of {train['patients']} patients, {images[1]} validation images "
                f"of {val['patients']} ({record['method']}; patient keys: {keys_read(record)})")
    except (OSError, ValueError, KeyError, TypeError):  # a run written by another version: the rest still prints
        return
    if skipped := record.get("skipped"):  # each named in a warning, which a long run scrolls away
        line += f"; {counted(len(skipped), 'unreadable file')} skipped (split.json lists them)"
    if data is not None and (unused := record.get("given_val_unused")):
        from pneumoscan.training.run_data import given_val_name

        folder = Path(data).is_dir()  # DATA/val, or a manifest's val rows
        line += (f"; {given_val_name(data)} ({counted(unused, 'image')}) {'is' if folder else 'are'} not used "
                 f"(validation is carved from train by patient): {'a new run with ' if resumed else ''}"
                 f"--use-given-val validates on {'it' if folder else 'them'} instead")
    print(line)


def cmd_ensemble(args: argparse.Namespace) -> int:
    from pneumoscan.training.ensemble import build_ensemble

    artifact = build_ensemble(args.runs, args.out, target_recall=args.target_recall, cache_dir=args.cache_dir,
                              progress=not args.quiet, seed=args.seed)
    print_validation(artifact)
    _say_guard_next(artifact, args.out)
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from pneumoscan.errors import counted, shell_word
    from pneumoscan.training.config import PRETRAIN_EPOCHS, TrainConfig
    from pneumoscan.training.pretrain import pretrain, pretraining_record

    cfg = TrainConfig.from_args(args)
    if args.epochs is None:  # TrainConfig's default is train's
        cfg.epochs = PRETRAIN_EPOCHS
    path = pretrain(cfg, resume=args.resume, progress=not args.quiet, keep_patient_key=args.patient_key is None,
                    keep_epochs=args.epochs is None)
    skipped = pretraining_record(path).get("skipped")  # each named in a warning, which a long run scrolls away
    print(f"pretrained weights: {path}" + (f"; {counted(skipped, 'unreadable file')} skipped (named in the warnings "
                                           f"before the epochs)" if skipped else ""))
    flags = ((f" --image-size {cfg.image_size}" if cfg.image_size else "")  # the size its weights were learned at
             + ("" if cfg.equalize else " --no-equalize") + (" --crop" if cfg.crop else "")
             + (f" --patient-key {cfg.patient_key}" if cfg.patient_key != "auto" else "")
             + (f" --max-images {cfg.max_images}" if cfg.max_images is not None else ""))  # it chooses patients too
    print(f"next: pneumoscan train --data {shell_word(args.data)} --init {shell_word(path)} --model {args.model} --split-seed {args.split_seed} "
          f"--val-fraction {args.val_fraction}{flags} --out RUN")
    return 0


def add_patient_key_arg(parser: argparse.ArgumentParser, default: str) -> None:
    """`--patient-key`: where the patient of an image is read (data/patients.py); `default` ends the help."""
    from pneumoscan import PATIENT_KEYS

    parser.add_argument("--patient-key", choices=PATIENT_KEYS,
                        help="where the patient of each image is read (the split by patient, patient counts): "
                             "auto = a CSV manifest's patient column, else the DICOM PatientID (a placeholder such "
                             "as ANONYMOUS on many images is passed over, with a warning), else the file name; "
                             "name = the file name only (Kermany's IM-0115-0001 -> IM-0115, person19_virus_50 -> "
                             "person19, else the whole name); folder = the folders between the class folder and "
                             "the image "
                             f"(NORMAL/pt7/a.dcm -> pt7); {default}")


def cmd_train(args: argparse.Namespace) -> int:
    from pneumoscan.training.config import TrainConfig, train_config
    from pneumoscan.training.trainer import train

    given = {k: v for k, v in vars(args).items() if v is not None and k in TrainConfig.__dataclass_fields__}
    cfg = train_config(given, resume=args.resume)
    artifact = train(cfg, resume=args.resume, progress=not args.quiet)
    print_validation(artifact)
    print_split(Path(cfg.out), cfg.data, resumed=args.resume)
    print(f"history: {Path(cfg.out) / 'history.csv'}")
    _say_guard_next(artifact, cfg.out)
    return 0


def _say_guard_next(artifact: Path, run: str) -> None:
    """The next step when the run has no chest X-ray guard yet: without one, its predictions refuse nothing; for a
    model the guard cannot take (no nn.Linear), that it gets none."""
    from pneumoscan.artifact import read_meta
    from pneumoscan.inference.ood.guard import guard_beside, no_guard_fits
    from pneumoscan.models.registry import create_model

    if guard_beside(artifact).exists():
        return
    meta = read_meta(artifact)
    anyway = "predict and serve score any image, a photo too, instead of refusing it"
    if none_fits := no_guard_fits(create_model(meta.model_name, **meta.model_config)):
        print(f"note: {none_fits}, so {anyway}")
    else:
        print(f"next: {meta.fit_guard_command(run, artifact.parent)} fits its chest X-ray guard; until then {anyway}")


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `train` (the CLI lists it with its own commands, before `evaluate`, not with `ensemble`)."""
    from pneumoscan.training.config import BALANCES

    p = subparsers.add_parser("train", help="train a classifier; validation is carved from train by patient")
    p.add_argument("--data", help="data folder with train/NORMAL and train/PNEUMONIA (or class folders, or CSV)")
    p.add_argument("--out", required=True, help="run folder of its own: checkpoints, history.csv, config.json, "
                                                "model.safetensors (not a pretrain folder, nor the data folder or "
                                                "one of its split or class folders)")
    p.add_argument("--model", help="architecture from `pneumoscan models` (default: resnet10)")
    p.add_argument("--image-size", type=int, help=IMAGE_SIZE_HELP)
    p.add_argument("--epochs", type=int, help="maximum epochs (default 30)")
    p.add_argument("--batch-size", type=int, help="batch size (default 64)")
    p.add_argument("--lr", type=float, help="peak learning rate of AdamW (default 2e-3)")
    p.add_argument("--seed", type=int, help="seed for initialisation, batch order and augmentation (default 0)")
    p.add_argument("--split-seed", type=int, help="seed choosing the validation patients (default 0)")
    p.add_argument("--patience", type=int,
                   help="stop after this many epochs in a row that do not become the kept one (default 8): without "
                        "--auc-tie, those of no higher val AUC; with it, those its rule passes over, even a higher AUC "
                        "whose val loss is not lower while the kept epoch stays within the tie")
    p.add_argument("--auc-tie", type=float,
                   help="an epoch whose validation AUC is within this of the highest so far becomes the kept one when "
                        "its validation loss is lower than the kept epoch's, or when the kept epoch's AUC has fallen "
                        "more than this below the highest (default 0: the epoch of the highest AUC)")
    p.add_argument("--val-fraction", type=float, help="share of train patients held out for validation (default 0.15)")
    p.add_argument("--use-given-val", action="store_true", default=None, help="validate on DATA/val (a CSV manifest's val rows) instead of a patient split of train; warns "
                        "when a class has fewer than 50 images there")
    add_patient_key_arg(p, "default auto; a resume keeps the run's")
    p.add_argument("--target-recall", type=float, help="recall the stored threshold is chosen for, on validation (default 0.95)")
    p.add_argument("--augment", type=float, help="augmentation strength, 0 = off (default 1.0)")
    p.add_argument("--aug-zoom", type=float,
                   help="random zoom in or out by up to this fraction, times --augment (default 0.2)")
    p.add_argument("--aug-aspect", type=float,
                   help="random stretch: one axis multiplied and the other divided by up to 1 + this, times --augment, "
                        "so height/width changes by up to (1 + this)^2 (default 0.1: 21 %%; 0 = off)")
    p.add_argument("--aug-sharpness", type=float,
                   help="random softening or sharpening: x + k (x - blur(x)) with a 1-pixel Gaussian blur and |k| up "
                        "to this, times --augment; 1 reaches the blurred image (default 0 = off)")
    p.add_argument("--balance", choices=BALANCES, help="class imbalance: sampler = class-balanced batches (default), weighted = class-weighted loss, none")
    p.add_argument("--label-smoothing", type=float, help="label smoothing (default 0)")
    p.add_argument("--mixup", type=float, help="mixup alpha, e.g. 0.2: trains on blends of image pairs (default 0 = off)")
    p.add_argument("--consistency", type=float,
                   help="train on two augmented views of every image and add this weight times the Jensen-Shannon "
                        "divergence of their predictions, pushing zoom, stretch, shift and light not to change the answer; "
                        "twice the compute per epoch (default 10; 0 = off, one view; off by default with "
                        "--augment 0 or --mixup)")
    p.add_argument("--ema-decay", type=float, help="exponential moving average of weights, e.g. 0.999 (default off)")
    p.add_argument("--tta", action="store_true", default=None,
                   help="average each prediction with its left-right mirror, a view training never shows (its "
                        "augmentation never reflects; the heart is on the left); it lowered validation AUC in all "
                        "54 runs of the ablation table of `pneumoscan card` (val AUC, mirror TTA): keep it off")
    p.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=None,
                   help="histogram-equalise every image, in training and at every prediction: robust to exposure "
                        "and contrast (default on)")
    p.add_argument("--crop", action=argparse.BooleanOptionalAction, default=None,
                   help="crop every image to a square as wide as the body, in training and at every prediction, "
                        "to take the field of view out of the picture (default off: on this data it lowered "
                        "validation AUC, row Z of `pneumoscan card`)")
    p.add_argument("--init", help="start from these weights: the pretrained.safetensors of `pneumoscan pretrain`, or "
                                  "ImageNet weights on disk for --model tv_resnet18/tv_resnet50 (torchvision's .pth, "
                                  "timm's model.safetensors; the ImageNet classifier is replaced); warns when a "
                                  "pneumoscan file trained on any of this run's validation films")
    p.add_argument("--max-images", type=int, help="use at most this many images per class (quick experiments)")
    add_cache_dir_arg(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its last checkpoint, with its own settings "
                        "(only --epochs, --data and --cache-dir may change)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (shown on stderr only when it is a terminal)")
    p.set_defaults(func=cmd_train)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `ensemble` and `pretrain`."""
    p = subparsers.add_parser(
        "ensemble", help="average trained runs (same validation split) into one model; threshold re-chosen on validation")
    p.add_argument("runs", nargs="+", help="finished `pneumoscan train` run folders (at least two)")
    p.add_argument("--out", required=True, help="folder for the ensemble's model.safetensors, val_predictions.csv, "
                                                "config.json and split.json (not in the members' data folder nor "
                                                "one of its split or class folders)")
    p.add_argument("--target-recall", type=float, help="recall the threshold is chosen for (default: the first member's)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the bootstrap drawing its validation intervals, as train's --seed draws a run's "
                        "(default: 0; recorded in its config.json)")
    add_cache_dir_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars (shown on stderr only when it is a terminal)")
    p.set_defaults(func=cmd_ensemble)

    p = subparsers.add_parser(
        "pretrain", help="self-supervised pretraining (SimSiam) on the training split's images; for `train --init`")
    p.add_argument("--data", required=True,
                   help="data folder with train/NORMAL and train/PNEUMONIA (the labels only stratify the split that "
                        "leaves out train's validation patients; SimSiam never sees them)")
    p.add_argument("--out", required=True, help="folder of its own (not a train run, nor the data folder or one of its "
                                                "split or class folders) for pretrained.safetensors and the resumable "
                                                "checkpoint")
    p.add_argument("--model", default="resnet10", help="architecture from `pneumoscan models` (default: resnet10)")
    p.add_argument("--image-size", type=int, help=IMAGE_SIZE_HELP)
    p.add_argument("--epochs", type=int,
                   help="epochs over the training split (default 15; a resume keeps the pretraining's)")
    p.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate per 256 images (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation, batch order and views (default 0)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="validation patients left out, as in `train` (default 0; use the same value there)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of patients left out (default 0.15, as in train)")
    add_patient_key_arg(p, "as in `train` (default auto; use the same value there; a resume keeps the pretraining's)")
    p.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=None,
                   help="histogram-equalise every image, as `train` does by default (default on; match the train run)")
    p.add_argument("--crop", action=argparse.BooleanOptionalAction, default=None,
                   help="crop every image to the body's width, as `train --crop` does (default off; match the train run)")
    p.add_argument("--max-images", type=int,
                   help="use at most this many images per class (quick experiments); drawn before the patient carve, "
                        "so it chooses the validation patients too: give `train --init` the same")
    add_cache_dir_arg(p)
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted pretraining in --out; give the options it was started with (only "
                        "--epochs, --data and --cache-dir may change, --data only to the same images moved; "
                        "--epochs and --patient-key may be left out: it keeps the pretraining's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (shown on stderr only when it is a terminal)")
    p.set_defaults(func=cmd_pretrain)
