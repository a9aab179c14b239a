"""Find labelled images on disk: split folders, class folders or a CSV manifest (read by `data.manifest`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Collection

from pneumoscan import CLASS_NAMES
from pneumoscan.data.formats import is_image_path
from pneumoscan.data.labels import SPLITS, Sample
from pneumoscan.data.manifest import is_manifest, read_manifest_splits
from pneumoscan.errors import InputError, counted, first_names, option, shell_word, switch, warn

_FOLDER_NAMES = frozenset(name.lower() for name in (*SPLITS, *CLASS_NAMES))  # a data set's split and class folders


def image_files(folder: Path, opened: bool = True) -> list[Path]:
    """The image files below `folder`, sorted: linked folders are followed (each real folder once), hidden
    files and folders are left out, and a sub-folder that cannot be listed is an InputError, not a gap. Without
    `opened`, told by their names alone, none opened (`is_image_path`)."""
    def refuse(err: OSError) -> None:
        raise InputError(f"{err.filename}: cannot list this folder ({err.strerror}); fix its permissions or move it "
                         f"out of {folder}")

    files: list[Path] = []
    seen: set[str] = set()
    for current, dirs, names in os.walk(folder, onerror=refuse, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:  # a link back up the tree, or two links to one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [p for p in (Path(current, n) for n in names) if is_image_path(p, opened)]
    return sorted(files)


def _child_dirs(folder: Path) -> dict[str, Path]:
    """Sub-folders by lower-case name; two that differ only in case are refused (one would be dropped)."""
    children: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_dir()):
        other = children.setdefault(path.name.lower(), path)
        if other != path:
            raise InputError(f"{folder}: holds both {other.name}/ and {path.name}/; folder names are read without "
                             f"regard to case, so merge them into one")
    return children


def _class_folder_samples(folder: Path, opened: bool = True) -> list[Sample]:
    children = _child_dirs(folder)
    samples: list[Sample] = []
    for label, name in enumerate(CLASS_NAMES):
        class_dir = children.get(name.lower())
        if class_dir is None:
            others = sorted(p.name for p in children.values() if p.name.lower() not in _FOLDER_NAMES)
            seen = f" (found {', '.join(others)}: a misspelt name?)" if others else ""
            raise InputError(f"{folder}: no {name} folder{seen}; expected class folders {' and '.join(CLASS_NAMES)}")
        files = image_files(class_dir, opened)
        if not files:
            raise InputError(f"{class_dir}: class folder has no images; add {name} images"
                             + (" or remove this split" if folder.name.lower() in SPLITS else ""))
        samples.extend(Sample(p, label) for p in files)
    return samples


class LeftOutImagesWarning(UserWarning):
    """Images under a data folder that no split or class folder holds, so no command reads them."""


def _warn_left_out(folder: Path, used: set[str], opened: bool = True) -> None:
    """Warn about the images in `folder` outside its sub-folders named in `used` (lower-case): a folder such as
    `Unsure/` or `pneumonia (2)/` beside the class folders, or films lying loose beside them, would otherwise be left
    out of every count without a word."""
    loose = [p for p in sorted(folder.iterdir()) if p.is_file() and is_image_path(p, opened)]
    if loose:
        one = len(loose) == 1
        warn(LeftOutImagesWarning(
            f"{folder}: {counted(len(loose), 'image')} {'lies' if one else 'lie'} outside the "
            f"{'split' if 'train' in used else 'class'} folders and {'is' if one else 'are'} left out, e.g. "
            f"{loose[0].name}; move {'it' if one else 'them'} into one to use {'it' if one else 'them'}"))
    for name, child in _child_dirs(folder).items():
        if name not in used and not name.startswith(".") and (found := _films_outside_runs(child, opened)):
            wanted = "split folder (train, val, test)" if "train" in used else "class folder (NORMAL, PNEUMONIA)"
            warn(LeftOutImagesWarning(
                f"{child}: not a {wanted}, so its {counted(len(found), 'image')} {'is' if len(found) == 1 else 'are'} "
                f"left out; rename it or move it out of {folder} to say what it is"))


def _films_outside_runs(folder: Path, opened: bool = True) -> list[Path]:
    """`image_files` of `folder` less those in a folder pneumoscan wrote a run in (DATA/runs/NAME/report_files/,
    a run's report figures): `check_out_of_data` lets a run be written there, so its files are no films left out."""
    from pneumoscan.artifact import PRETRAINING_FILES
    from pneumoscan.outputs import RUN_MARKERS

    runs: dict[Path, bool] = {}

    def in_run(path: Path) -> bool:
        for parent in path.relative_to(folder).parents:  # from the file's own folder up to `folder`
            place = folder / parent
            if place not in runs:
                runs[place] = any((place / name).is_file() for name in (*RUN_MARKERS, *PRETRAINING_FILES))
            if runs[place]:
                return True
        return False

    return [path for path in image_files(folder, opened) if not in_run(path)]


def _linked_targets(root: Path) -> set[Path]:
    """Where the split and class folders of `root` (and those of its split folders) lead, resolved: a linked class
    folder (a data set assembled from links) is its target too, where what is written through the target lands."""
    found: set[Path] = set()
    for child in _sub_folders(root):
        if child.name.lower() in _FOLDER_NAMES:
            found.add(child.resolve())
            if child.name.lower() in SPLITS:
                found |= {c.resolve() for c in _sub_folders(child) if c.name.lower() in _FOLDER_NAMES}
    return found


def _sub_folders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except OSError:  # cannot be listed: `discover` names it
        return []


def check_out_of_data(out: str | Path, data: str | Path, folder: str | Path | None = None,
                      resume: bool = False) -> None:
    """InputError when `out` (where a command writes: a run folder, a model file in `folder`) is the data folder
    `data` or inside one of its split or class folders, where what it writes would sit among the labelled films (an
    image of it taken for one); a folder of its own in it (DATA/runs/) is none of them. For a `data` that is a split
    folder (DATA/train), the other split folders beside it count too. Each folder counts both as named and where its
    links lead. With `resume` (a run made there before this check, resumed), the fix is to move the run out, as
    `out` may change."""
    given = Path(os.path.abspath(data))
    if not given.is_dir():
        return
    written = Path(os.path.abspath(folder if folder is not None else out))
    holder = _data_holding(written, given)
    if holder is None:
        return
    is_data = bool({Path(os.path.abspath(out)), Path(out).resolve()} & {given, given.resolve()})
    shown = data if holder == given else os.path.normpath(os.path.join(data, os.pardir))
    name = written.name if not is_data else "run"
    if not resume:
        a_file = folder is not None and written != Path(os.path.abspath(out))  # --out names a file in `folder`
        example = shell_word(_outside(given, Path(out).name if a_file else holder.name or "run"))
        fix = f"give {option('out')} a {'file' if a_file else 'folder'} outside it, e.g. {option('out', example)}"
    else:
        moved = _outside(given, name)
        while Path(moved).exists():  # mv into an existing folder would nest the run, where --resume finds none
            moved += "_moved"
        fix = (f"move the run out of it and resume it there with {switch('resume')} "
               f"{option('out', shell_word(moved))}: "
               + (f"mkdir -p {shell_word(str(Path(moved).parent))} && mv {shell_word(_run_itself(out))} "
                  f"{shell_word(moved)}"
                  if not is_data else f"move the run's files from {shell_word(str(out))} into {shell_word(moved)}/"))
    raise InputError(f"{out}: {'is' if is_data else 'is inside'} the data folder {shown}, where what is written would "
                     f"sit among its labelled films; {fix}")


def _run_itself(out: str | Path) -> str:
    """The folder to move for the run at `out`: where `out` leads when it is a link (`mv LINK` moves the link, and the
    run stays where --resume refuses it), as a path from here when below here."""
    if not Path(out).is_symlink():
        return str(out)
    real = Path(out).resolve()
    return os.path.relpath(real) if Path.cwd() in real.parents else str(real)


def _data_holding(written: Path, given: Path) -> Path | None:
    """The data folder (`given`, or for a split folder the folder holding it) whose labelled films `written` would sit
    among: `given` itself, a split or class folder of it, where their links lead, and, for a split folder `given`,
    the other split folders beside it; None for anywhere else (`given`/runs/ among them)."""
    places = {written, written.resolve()}
    if places & {given, given.resolve()} or _under(places, given, _FOLDER_NAMES, _linked_targets(given)):
        return given
    if _is_split_folder(given):
        others = {name for name in SPLITS if name != given.name.lower()}
        beside = {child.resolve() for child in _sub_folders(given.parent) if child.name.lower() in others}
        beside |= {c.resolve() for child in beside for c in _sub_folders(child) if c.name.lower() in _FOLDER_NAMES}
        if _under(places, given.parent, others, beside):
            return given.parent
    return None


def _under(places: set[Path], root: Path, names: set[str], targets: set[Path]) -> bool:
    """Whether any of `places` lies in a folder of `root` named one of `names` (lower case), or at or under one of
    `targets` (resolved folders)."""
    named = any(place.relative_to(r).parts[0].lower() in names
                for place in places for r in {root, root.resolve()} if r in place.parents)
    return named or any(place == t or t in place.parents for t in targets for place in places)


def _outside(given: Path, name: str) -> str:
    """A place to write `name` outside the data folder `given`: runs/NAME from here, or beside the data folder when
    here is inside it."""
    here = Path(os.path.abspath("runs")) / name
    if _data_holding(here, given) is None:
        return f"runs/{name}"
    holder = given.parent if _is_split_folder(given) else given
    return os.path.join(os.path.relpath(holder.parent), "runs", name)


def _is_split_folder(folder: Path) -> bool:
    """Whether `folder` is a split folder of the data set holding it (DATA/train, of class folders): named as one, and
    holding no split folders of its own, as a data set that is merely named so (/x/train with train/ and test/) does."""
    return folder.name.lower() in SPLITS and not any(child.name.lower() in SPLITS for child in _sub_folders(folder))


def discover(root: str | Path, unopened: Collection[str] = ()) -> dict[str, list[Sample]]:
    """Labelled samples per split found under `root`.

    Accepts a Kaggle/Mendeley root (`train/`, optional `val/`, `test/`, each with class folders),
    a single folder of class folders (returned as split `all`), or a CSV manifest (split `all`, or the
    splits its `split` column names). The files of the split folders named in `unopened` (training's test/, when its
    patient keys need none of them) are told by their names alone, none opened (`is_image_path`).
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such file or folder; give the data folder (with train/ and test/) or a CSV manifest")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise InputError(f"{root}: expected a folder or a .csv manifest with columns path,label")
        return read_manifest_splits(root)
    children = _child_dirs(root)
    splits = {name: children[name] for name in SPLITS if name in children}
    classes = {name.lower() for name in CLASS_NAMES}
    if splits:
        found = {name: _class_folder_samples(folder, name not in unopened) for name, folder in splits.items()}
        _warn_left_out(root, set(SPLITS))
        for name, folder in splits.items():
            _warn_left_out(folder, classes, name not in unopened)
        return found
    if any(name.lower() in children for name in CLASS_NAMES):
        found = {"all": _class_folder_samples(root)}
        _warn_left_out(root, classes)
        return found
    if (root / "model.safetensors").is_file():
        raise InputError(f"{root}: a run folder (a trained model), not labelled films; give the data folder (with "
                         f"train/ and test/) or a CSV manifest")
    nested = _nested_data(children)
    if nested is not None:
        raise InputError(f"{root}: the data is one folder down, in {nested} (it holds {_holds_names(nested)}); give "
                         f"that folder")
    # `--data DATA/train/NORMAL`: one class, where both are needed (a data set named pneumonia/ holding its data one
    # folder down is told so above)
    if root.resolve().name.lower() in classes:
        holder, real = os.path.normpath(os.path.join(root, os.pardir)), root.resolve().parent
        if Path(holder).resolve() != real:  # a linked class folder: the folder holding where it leads
            holder = os.path.relpath(real) if Path.cwd() in real.parents else str(real)
        both = {p.name.lower() for p in _sub_folders(real)} >= classes
        raise InputError(f"{root}: is a class folder, holding the films of one class; give the folder that holds "
                         + (f"both class folders, {holder}" if both else f"both {' and '.join(CLASS_NAMES)}"))
    manifests = [p for p in sorted(root.glob("*")) if p.suffix.lower() == ".csv" and is_manifest(p)]
    manifest = f" (such as {manifests[0]})" if manifests else ""
    raise InputError(
        f"{root}: found neither train/ val/ test/ folders nor NORMAL/ PNEUMONIA/ class folders{_holds(children)}; "
        f"arrange the images as DATA/train/NORMAL, DATA/train/PNEUMONIA, ... (or rename your class folders NORMAL "
        f"and PNEUMONIA) or pass a CSV manifest{manifest}"
    )


def _nested_data(children: dict[str, Path]) -> Path | None:
    """The one sub-folder that holds split or class folders, as an unpacked archive nests the data
    (`chest_xray/chest_xray/train`, beside a `__MACOSX/`); None when none or several do."""
    found = [child for child in children.values()  # a folder that cannot be listed is no candidate
             if _FOLDER_NAMES & {p.name.lower() for p in _sub_folders(child)}]
    return found[0] if len(found) == 1 else None


def _holds_names(folder: Path) -> str:
    """The split or class folders `folder` holds, in their usual order: `train/, test/`."""
    order = [name.lower() for name in (*SPLITS, *CLASS_NAMES)]
    found = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.lower() in order),
                   key=lambda p: order.index(p.name.lower()))
    return ", ".join(f"{p.name}/" for p in found)


def _holds(children: dict[str, Path], shown: int = 6) -> str:
    """The sub-folders a data folder holds instead of split or class folders (hidden ones aside)."""
    names = [f"{path.name}/" for path in children.values() if not path.name.startswith(".")]
    if not names:
        return " (it holds no sub-folders)"
    return f" (it holds {first_names(names, shown)})"


class ScoredSplit(tuple):
    """The split to score: unpacks as (its name, its samples); `splits`: every split of its data set as found with
    it, which evaluate keys patients over as `audit` does, without scanning the folder again."""

    splits: dict[str, list[Sample]]

    def __new__(cls, name: str, samples: list[Sample], splits: dict[str, list[Sample]]) -> "ScoredSplit":
        scored = super().__new__(cls, (name, samples))
        scored.splits = splits
        return scored


def evaluation_samples(root: str | Path, split: str | None = None, unopened: Collection[str] = ()) -> ScoredSplit:
    """Samples to evaluate on: the named split, else `test`, else the only split present (a `ScoredSplit`).
    `unopened`: splits whose files are listed by their names alone, none opened (`discover`), unless scored."""
    if split is not None:
        split = split.lower() if split.lower() in SPLITS else split  # split folders are found in any case
    found = discover(root, [name for name in unopened if name != (split or "test")])
    if split is not None:
        if split not in found:
            if list(found) == ["all"]:
                raise InputError(f"{root}: no {split}/ split here, only class folders; leave out {option('split')} to use "
                                 "all of its images")
            raise InputError(f"{root}: no {split}/ split here (found: {', '.join(found)})")
        return ScoredSplit(split, found[split], found)
    for name in ("test", "all"):
        if name in found:
            return ScoredSplit(name, found[name], found)
    if len(found) == 1:
        name = next(iter(found))
        return ScoredSplit(name, found[name], found)
    raise InputError(f"{root}: no test/ split; pass {option('split')} with one of {', '.join(found)}")
