from __future__ import annotations

from pathlib import Path

import pytest

from pneumoscan.data.layout import discover, evaluation_samples
from pneumoscan.errors import InputError
from tests.conftest import write_xray


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


def test_manifest(tmp_path: Path) -> None:
    write_xray(tmp_path / "img" / "a.png", 0, 1)
    write_xray(tmp_path / "img" / "b.png", 1, 2)
    (tmp_path / "m.csv").write_text("path,label\nimg/a.png,normal\nimg/b.png,PNEUMONIA\n")
    assert [s.label for s in discover(tmp_path / "m.csv")["all"]] == [0, 1]


def test_manifest_saved_by_excel(tmp_path: Path) -> None:
    write_xray(tmp_path / "a.png", 0, 1)
    write_xray(tmp_path / "b.png", 1, 2)
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbfpath,label\r\na.png,NORMAL\r\nb.png,PNEUMONIA\r\n")  # CSV UTF-8
    assert [s.label for s in discover(tmp_path / "m.csv")["all"]] == [0, 1]
    (tmp_path / "u16.csv").write_bytes("path,label\r\na.png,NORMAL\r\n".encode("utf-16"))  # Unicode text
    with pytest.raises(InputError, match=r"u16\.csv: not UTF-8 text; save the manifest as a UTF-8 CSV"):
        discover(tmp_path / "u16.csv")


def test_manifest_wrong_label_names_line(tmp_path: Path) -> None:
    write_xray(tmp_path / "a.png", 0, 1)
    (tmp_path / "m.csv").write_text("path,label\na.png,covid\n")
    with pytest.raises(InputError, match=r"m\.csv:2: unknown label 'covid'"):
        discover(tmp_path / "m.csv")


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
    with pytest.raises(InputError, match="found neither"):
        discover(tmp_path)


def test_evaluation_samples_prefers_test(tiny_dataset: Path) -> None:
    split, samples = evaluation_samples(tiny_dataset)
    assert split == "test" and samples
    with pytest.raises(InputError, match="no val/ split"):
        evaluation_samples(tiny_dataset, "val")


def test_manifest_split_column_keeps_test_rows_out_of_training(tmp_path: Path) -> None:
    for name, label in (("a", 0), ("b", 1), ("c", 0), ("d", 1)):
        write_xray(tmp_path / f"{name}.png", label, ord(name))
    (tmp_path / "m.csv").write_text("path,label,split\na.png,NORMAL,train\nb.png,PNEUMONIA,Train\n"
                                    "c.png,NORMAL,test\nd.png,PNEUMONIA,test\n")
    found = discover(tmp_path / "m.csv")
    assert {k: [s.path.name for s in v] for k, v in found.items()} == {"train": ["a.png", "b.png"],
                                                                     "test": ["c.png", "d.png"]}
    assert [s.path.name for s in evaluation_samples(tmp_path / "m.csv")[1]] == ["c.png", "d.png"]
    (tmp_path / "bad.csv").write_text("path,label,split\na.png,NORMAL,train\nb.png,PNEUMONIA,\n")
    with pytest.raises(InputError, match=r"bad\.csv:3: unknown split ''; use one of train, val, test"):
        discover(tmp_path / "bad.csv")
