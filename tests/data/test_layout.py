from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from pneumoscan.data.layout import check_out_of_data, discover, evaluation_samples
from pneumoscan.errors import InputError
from tests.conftest import write_dicom, write_xray


def test_kaggle_layout(tiny_dataset: Path) -> None:
    found = discover(tiny_dataset)
    assert set(found) == {"train", "test"}
    assert {s.label for s in found["train"]} == {0, 1}
    assert all(s.path.parent.name == ("NORMAL", "PNEUMONIA")[s.label] for s in found["train"])


def test_case_insensitive_class_folders(tmp_path: Path) -> None:
    write_xray(tmp_path / "normal" / "a.png", 0, 1)
    write_xray(tmp_path / "Pneumonia" / "b.png", 1, 2)
    found = discover(tmp_path)
    assert [s.label for s in found["all"]] == [0, 1]


def test_missing_folder_and_empty_class(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        discover(tmp_path / "nope")
    write_xray(tmp_path / "train" / "NORMAL" / "a.png", 0, 1)
    (tmp_path / "train" / "PNEUMONIA").mkdir()
    with pytest.raises(InputError, match="PNEUMONIA: class folder has no images; add PNEUMONIA images or remove this split"):
        discover(tmp_path)
    classes_only = tmp_path / "classes"
    write_xray(classes_only / "NORMAL" / "a.png", 0, 1)
    (classes_only / "PNEUMONIA").mkdir()
    with pytest.raises(InputError, match=r"class folder has no images; add PNEUMONIA images$"):
        discover(classes_only)


def test_misspelt_class_folder_is_named(tmp_path: Path) -> None:
    write_xray(tmp_path / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "PNEUMONA" / "b.png", 1, 2)
    with pytest.raises(InputError, match=r"no PNEUMONIA folder \(found PNEUMONA: a misspelt name\?\)"):
        discover(tmp_path)


def test_split_asked_of_class_folders(tmp_path: Path) -> None:
    from pneumoscan.data.layout import evaluation_samples

    write_xray(tmp_path / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "PNEUMONIA" / "b.png", 1, 2)
    with pytest.raises(InputError, match="no test/ split here, only class folders; leave out --split"):
        evaluation_samples(tmp_path, "test")


def test_no_layout(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(InputError, match="found neither") as err:
        discover(tmp_path)
    assert str(err.value).endswith("or pass a CSV manifest")


def test_a_folder_of_other_class_folders_names_them_and_the_renaming(tmp_path: Path) -> None:
    # a notebook's healthy/ and sick/ were refused without saying what the folder held or that renaming them does it
    for name in ("healthy", "sick", ".ipynb_checkpoints"):
        (tmp_path / "keras" / name).mkdir(parents=True)
    with pytest.raises(InputError, match=r"keras: found neither train/ val/ test/ folders nor NORMAL/ PNEUMONIA/ class "
                                         r"folders \(it holds healthy/, sick/\); arrange the images as "
                                         r"DATA/train/NORMAL, DATA/train/PNEUMONIA, \.\.\. \(or rename your class folders NORMAL and "
                                         r"PNEUMONIA\) or pass a CSV manifest$"):
        discover(tmp_path / "keras")
    for i in range(8):
        (tmp_path / "many" / f"ward{i}").mkdir(parents=True)
    with pytest.raises(InputError, match=r"\(it holds ward0/, ward1/, ward2/, ward3/, ward4/, ward5/ "
                                         r"\(and 2 more\)\)"):
        discover(tmp_path / "many")
    (tmp_path / "bare").mkdir()
    with pytest.raises(InputError, match=r"bare: found neither .* class folders \(it holds no sub-folders\); "):
        discover(tmp_path / "bare")


def test_a_folder_of_films_beside_their_manifest_names_the_manifest(tmp_path: Path) -> None:
    """A flat export (films and manifest.csv in one folder) given as the folder: the error said to pass a CSV
    manifest without naming the one lying there."""
    write_dicom(tmp_path / "IM00001", 0, 1)
    (tmp_path / "manifest.csv").write_text("path,label\nIM00001,NORMAL\n")
    with pytest.raises(InputError) as err:
        discover(tmp_path)
    assert str(err.value).endswith(f"or pass a CSV manifest (such as {tmp_path / 'manifest.csv'})")


def test_data_one_folder_down_is_named(tmp_path: Path) -> None:
    """Kaggle's archive unpacks as chest_xray/chest_xray/train beside __MACOSX/: the error said only that the
    folder held chest_xray/ and __MACOSX/, not that the data was right there."""
    root = tmp_path / "download"
    write_xray(root / "chest_xray" / "train" / "NORMAL" / "a.png", 0, 1)
    write_xray(root / "chest_xray" / "test" / "PNEUMONIA" / "b.png", 1, 2)
    (root / "__MACOSX" / "chest_xray").mkdir(parents=True)
    with pytest.raises(InputError, match=rf"^{root}: the data is one folder down, in {root / 'chest_xray'} \(it holds "
                                         r"train/, test/\); give that folder$"):
        discover(root)
    write_xray(root / "other" / "NORMAL" / "c.png", 0, 3)  # two candidates: no guess
    with pytest.raises(InputError, match=r"found neither .* \(it holds __MACOSX/, chest_xray/, other/\)"):
        discover(root)


def test_a_csv_that_is_no_manifest_is_not_offered_as_one(tmp_path: Path) -> None:
    """A folder of CSVs none of which has path and label columns (a notebook's results.csv): the error offered the
    first CSV as a manifest, which then failed for want of those columns."""
    (tmp_path / "stuff").mkdir()
    (tmp_path / "history.csv").write_text("epoch,lr,train_loss\n1,0.002,0.7\n")
    (tmp_path / "zz.csv").write_text("File Name;Class\na.png;NORMAL\n")
    with pytest.raises(InputError) as err:
        discover(tmp_path)
    assert str(err.value).endswith(f"or pass a CSV manifest (such as {tmp_path / 'zz.csv'})")


def test_a_run_folder_given_as_data_is_named_as_one(tmp_path: Path) -> None:
    """`evaluate --data RUN` (the run folder where the data folder goes) said to pass the run's history.csv as a
    manifest."""
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "report_files").mkdir()
    (tmp_path / "history.csv").write_text("epoch,lr\n1,0.002\n")
    (tmp_path / "val_predictions.csv").write_text("path,label,prob,cause\n/x/a.png,0,0.4,\n")
    with pytest.raises(InputError, match=rf"^{tmp_path}: a run folder \(a trained model\), not labelled films; give "
                                         r"the data folder \(with train/ and test/\) or a CSV manifest$"):
        discover(tmp_path)


def test_evaluation_samples_prefers_test(tiny_dataset: Path) -> None:
    split, samples = evaluation_samples(tiny_dataset)
    assert split == "test" and samples
    with pytest.raises(InputError, match="no val/ split"):
        evaluation_samples(tiny_dataset, "val")


def test_folders_differing_only_in_case_are_refused_not_dropped(tmp_path: Path) -> None:
    write_xray(tmp_path / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "normal" / "b.png", 0, 2)
    write_xray(tmp_path / "PNEUMONIA" / "c.png", 1, 3)
    with pytest.raises(InputError, match=r"holds both NORMAL/ and normal/; .* merge them"):
        discover(tmp_path)


def test_linked_folders_are_followed_once_and_hidden_folders_left_out(tmp_path: Path) -> None:
    import os

    write_xray(tmp_path / "data" / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "ward3" / "b.png", 0, 2)
    write_xray(tmp_path / "data" / "NORMAL" / ".thumbnails" / "t.png", 1, 3)  # a viewer's cache, not a film
    write_xray(tmp_path / "data" / "PNEUMONIA" / "c.png", 1, 4)
    os.symlink(tmp_path / "ward3", tmp_path / "data" / "NORMAL" / "ward3")
    os.symlink(tmp_path / "data" / "NORMAL", tmp_path / "data" / "NORMAL" / "loop")  # a link back up the tree
    os.symlink(tmp_path / "gone.png", tmp_path / "data" / "NORMAL" / "gone.png")  # broken: read later, and reported
    names = sorted(s.path.name for s in discover(tmp_path / "data")["all"] if s.label == 0)
    assert names == ["a.png", "b.png", "gone.png"]
    from pneumoscan.data.decode import read_grayscale

    with pytest.raises(InputError, match=r"gone\.png: a link to .*gone\.png, which does not exist; fix or remove"):
        read_grayscale(tmp_path / "data" / "NORMAL" / "gone.png")


def test_a_folder_that_cannot_be_listed_is_an_error_not_a_gap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    write_xray(tmp_path / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "NORMAL" / "locked" / "b.png", 0, 2)
    write_xray(tmp_path / "PNEUMONIA" / "c.png", 1, 3)
    real = os.scandir

    def scandir(path: str) -> object:  # as chmod 000 would for a user other than root
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match=r"locked: cannot list this folder \(Permission denied\)"):
        discover(tmp_path)


def test_split_is_matched_in_any_case(tmp_path: Path) -> None:
    for split in ("Train", "Test"):
        write_xray(tmp_path / split / "NORMAL" / "IM-0001-0001.png", 0, 1)
        write_xray(tmp_path / split / "PNEUMONIA" / "person1_virus_1.png", 1, 2)
    assert evaluation_samples(tmp_path, "Test")[0] == "test"


def test_images_no_class_or_split_folder_holds_are_warned_about_not_dropped_silently(tmp_path: Path) -> None:
    from pneumoscan.data.layout import LeftOutImagesWarning

    write_xray(tmp_path / "site" / "Normal" / "a.png", 0, 1)
    write_xray(tmp_path / "site" / "pneumonia" / "b.png", 1, 2)
    (tmp_path / "site" / "notes.txt").write_text("export from PACS")  # not an image: nothing to say
    write_xray(tmp_path / "site" / ".thumbnails" / "t.png", 0, 3)  # hidden: left out quietly, as documented
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(discover(tmp_path / "site")["all"]) == 2
    write_xray(tmp_path / "site" / "Unsure" / "c.png", 0, 4)
    write_xray(tmp_path / "site" / "d.png", 0, 5)
    with pytest.warns(LeftOutImagesWarning) as caught:
        assert len(discover(tmp_path / "site")["all"]) == 2
    messages = {str(w.message) for w in caught}
    assert messages == {f"{tmp_path / 'site'}: 1 image lies outside the class folders and is left out, e.g. d.png; "
                        f"move it into one to use it",
                        f"{tmp_path / 'site' / 'Unsure'}: not a class folder (NORMAL, PNEUMONIA), so its 1 image is "
                        f"left out; rename it or move it out of {tmp_path / 'site'} to say what it is"}
    write_xray(tmp_path / "kaggle" / "train" / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "kaggle" / "train" / "PNEUMONIA" / "b.png", 1, 2)
    write_xray(tmp_path / "kaggle" / "chest_xray" / "train" / "NORMAL" / "a.png", 0, 1)  # the zip's nested copy
    with pytest.warns(LeftOutImagesWarning, match=r"chest_xray: not a split folder \(train, val, test\), so its 1 "):
        assert list(discover(tmp_path / "kaggle")) == ["train"]


@pytest.mark.parametrize(("data", "out", "shown", "suggested"), [
    ("linked", "linked/NORMAL/run", "linked", "linked"),  # through a linked class folder
    ("linked", "real/PNEUMONIA/run", "linked", "linked"),  # into where the link leads
    ("split/train", "split/val/NORMAL/run", "split", "split"),  # --data a split folder: its sibling splits are data
    ("split/train", "split/train/NORMAL/run", "split/train", "train"),
], ids=["link", "link-target", "sibling-split", "own-split"])
def test_out_of_data_follows_linked_class_folders_and_the_folder_holding_a_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: str, out: str, shown: str, suggested: str) -> None:
    """A data folder of linked class folders let --out DATA/NORMAL/run through (compared resolved, the run was in the
    link's target, not in DATA), and --data DATA/train let --out DATA/val/NORMAL/run through: the run's chart PNGs
    then sat among the films the next train reads."""
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        write_xray(tmp_path / "real" / name / "a.png", label, 1)
        (tmp_path / "linked").mkdir(exist_ok=True)
        (tmp_path / "linked" / name).symlink_to(tmp_path / "real" / name)
        for split in ("train", "val"):
            write_xray(tmp_path / "split" / split / name / "a.png", label, 2)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=rf"^{out}: is inside the data folder {shown}, where what is written would "
                                         rf"sit among its labelled films; give --out a folder outside it, e\.g\. "
                                         rf"--out runs/{suggested}$"):
        check_out_of_data(out, data)
    check_out_of_data(f"{data}/runs/run", data)  # a folder of its own beside the split or class folders
    check_out_of_data("real/run", "linked")
    monkeypatch.chdir(tmp_path / "split" / "train")  # a data set in a folder named train, worked on from inside it
    check_out_of_data("runs/run", ".")


def test_out_of_data_advice_quotes_paths_with_spaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The advice's --out and mv paths are pasted into a shell: a space in a name split them (`--out runs/run 1`)."""
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "my data" / name).mkdir(parents=True)
    (tmp_path / "my data" / "NORMAL" / "run 1").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"e\.g\. --out 'runs/my data'$"):
        check_out_of_data("my data/NORMAL/run 1", "my data")
    with pytest.raises(InputError, match=r"--resume --out 'runs/run 1': mkdir -p runs && mv 'my data/NORMAL/run 1' "
                                         r"'runs/run 1'$"):
        check_out_of_data("my data/NORMAL/run 1", "my data", resume=True)


def test_out_of_data_advice_for_a_linked_run_moves_the_run_not_the_link(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An --out that is a link to a run inside a class folder: the advice said `mv LINK runs/LINK`, which moves the
    link, so the run stayed among the films and the resume it advised was refused again. It moves where it leads."""
    for name in ("NORMAL", "PNEUMONIA"):
        (tmp_path / "data" / name).mkdir(parents=True)
    (tmp_path / "data" / "NORMAL" / "r").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data" / "NORMAL" / "r")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"--resume --out runs/link: mkdir -p runs && mv data/NORMAL/r runs/link$"):
        check_out_of_data("link", "data", resume=True)


@pytest.mark.parametrize("data", ["kaggle", "kaggle/train"], ids=["data-runs", "split-runs"])
def test_a_run_written_where_out_of_data_allows_it_is_no_left_out_folder(tmp_path: Path, data: str) -> None:
    """check_out_of_data lets `--out DATA/runs/r` (and, for --data DATA/train, DATA/train/runs/r) through, but once
    `report` put its figures in the run the next command warned that runs/ is no split or class folder and to move
    it out. A folder pneumoscan wrote a run in is known by its files and passed over; other images still warned of."""
    from pneumoscan.data.layout import LeftOutImagesWarning

    write_xray(tmp_path / "kaggle" / "train" / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "kaggle" / "train" / "PNEUMONIA" / "b.png", 1, 2)
    runs = tmp_path / data / "runs"
    check_out_of_data(runs / "r", tmp_path / data)
    (runs / "r").mkdir(parents=True)
    (runs / "r" / "model.safetensors").write_bytes(b"")
    write_xray(runs / "r" / "report_files" / "roc.png", 0, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert discover(tmp_path / data)
    write_xray(runs / "mine.png", 0, 4)  # a film of the user's own beside the run is still left out
    with pytest.warns(LeftOutImagesWarning, match=r"runs: not a (split|class) folder .*, so its 1 image is left out"):
        discover(tmp_path / data)


def test_a_data_set_named_for_a_split_keeps_its_own_siblings_out_of_the_check(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A --data named train was taken for a split folder whatever it held, so a data set /x/train with its own train/
    and test/ made /x the data set: --out /x/test/runs/r (no data of it) was refused, and the advice from inside it
    pointed one folder too high. Only a folder of class folders so named is a split whose siblings are data."""
    for split in ("train", "test"):
        for name in ("NORMAL", "PNEUMONIA"):
            (tmp_path / "x" / "train" / split / name).mkdir(parents=True)
    (tmp_path / "x" / "test").mkdir()
    monkeypatch.chdir(tmp_path)
    check_out_of_data("x/test/runs/r", "x/train")
    check_out_of_data("x/val/r", "x/train")
    with pytest.raises(InputError, match=r"inside the data folder x/train,"):
        check_out_of_data("x/train/test/NORMAL/r", "x/train")
    monkeypatch.chdir(tmp_path / "x" / "train" / "train")
    with pytest.raises(InputError, match=r"e\.g\. --out \.\./\.\./runs/train$"):
        check_out_of_data("NORMAL/r", "..")
    (tmp_path / "y" / "train" / "NORMAL").mkdir(parents=True)  # a split folder of class folders: its siblings count
    with pytest.raises(InputError, match=r"inside the data folder .*y,"):
        check_out_of_data(tmp_path / "y" / "val" / "r", tmp_path / "y" / "train")


def test_a_class_folder_given_as_the_data_names_the_folder_holding_both(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--data DATA/train/NORMAL` said 'found neither train/ val/ test/ folders nor NORMAL/ PNEUMONIA/ class folders
    (it holds no sub-folders)' and to arrange the images, which are arranged: it names the folder to give."""
    write_xray(tmp_path / "train" / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "train" / "PNEUMONIA" / "b.png", 1, 2)
    write_xray(tmp_path / "alone" / "Normal" / "c.png", 0, 3)
    with pytest.raises(InputError, match=r"NORMAL: is a class folder, holding the films of one class; give the folder "
                                         r"that holds both class folders, .*train$"):
        discover(tmp_path / "train" / "NORMAL")
    monkeypatch.chdir(tmp_path / "train" / "PNEUMONIA")
    with pytest.raises(InputError, match=r"^\.: is a class folder, .* both class folders, \.\.$"):
        discover(".")
    with pytest.raises(InputError, match=r"Normal: is a class folder, .* give the folder that holds both NORMAL and "
                                         r"PNEUMONIA$"):
        discover(tmp_path / "alone" / "Normal")


def test_a_data_set_named_for_a_class_holding_its_data_one_folder_down_is_told_so(tmp_path: Path) -> None:
    """A download kept as pneumonia/chest_xray/train/... was called a class folder holding one class (73a3af6 asked
    before the nested check), not told that its data is one folder down, in pneumonia/chest_xray."""
    root = tmp_path / "pneumonia"
    write_xray(root / "chest_xray" / "train" / "NORMAL" / "a.png", 0, 1)
    write_xray(root / "chest_xray" / "test" / "PNEUMONIA" / "b.png", 1, 2)
    with pytest.raises(InputError, match=rf"^{root}: the data is one folder down, in {root / 'chest_xray'} \(it holds "
                                         r"train/, test/\); give that folder$"):
        discover(root)


def test_a_linked_class_folder_given_as_the_data_names_the_folder_holding_where_it_leads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--data LINK` (a link to DATA/train/NORMAL) was told to give the folder holding the link ('.', or the link's
    own folder), which holds no class folders, rather than DATA/train, which holds both."""
    write_xray(tmp_path / "data" / "train" / "NORMAL" / "a.png", 0, 1)
    write_xray(tmp_path / "data" / "train" / "PNEUMONIA" / "b.png", 1, 2)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "normal").symlink_to(tmp_path / "data" / "train" / "NORMAL")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"^links/normal: is a class folder, .* both class folders, data/train$"):
        discover("links/normal")
    monkeypatch.chdir(tmp_path / "data" / "train" / "PNEUMONIA")  # not below here: in full
    with pytest.raises(InputError, match=rf"^{tmp_path / 'links' / 'normal'}: is a class folder, .* both class "
                                         rf"folders, {tmp_path.resolve() / 'data' / 'train'}$"):
        discover(tmp_path / "links" / "normal")
