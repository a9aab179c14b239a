from __future__ import annotations

import csv
import errno
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.cli import main
from tests.conftest import per_film_lines, sample_as_data, write_dicom, write_xray

METRIC_KEYS = {"accuracy", "precision", "recall", "specificity", "f1", "npv", "roc_auc", "pr_auc", "brier", "ece",
               "threshold", "confusion_matrix", "n", "recall_by_cause", "borderline"}  # as docs/evaluation.md lists them


def test_end_to_end_on_the_bundled_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = sample_as_data(tmp_path / "sample")  # its test/ of train films: the sample's own is for reporting only
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--model", "cnn", "--image-size", "64",
                 "--epochs", "2", "--quiet", "--val-fraction", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "validation: AUC" in out
    split = json.loads((run / "split.json").read_text())["counts"]["val"]  # the figures say what they rest on
    assert f"; {split['NORMAL'] + split['PNEUMONIA']} images ({split['NORMAL']} NORMAL, {split['PNEUMONIA']} PNEUMONIA)" in out

    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(run), "--data", str(data), "--json", str(out_json), "--n-boot", "50"]) == 0
    printed = capsys.readouterr().out
    assert "specificity" in printed and "precision" in printed and "support" in printed
    assert "  npv " in printed and "  ece " in printed  # docs/evaluation.md: evaluate prints NPV and ECE too
    summary = json.loads(out_json.read_text())
    assert METRIC_KEYS <= set(summary)
    assert summary["n"] == 60 and summary["split"] == "test"
    lo, hi = summary["roc_auc"]["ci95"]
    assert lo <= summary["roc_auc"]["value"] <= hi
    assert sum(map(sum, summary["confusion_matrix"]["matrix"])) == 60

    assert main(["predict", "--model", str(run), str(data / "test" / "NORMAL"), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 30
    assert all(0.0 <= float(r["probability"]) <= 1.0 and r["label"] in {"NORMAL", "PNEUMONIA"} for r in rows)

    strict = tmp_path / "strict.json"
    assert main(["evaluate", "--model", str(run), "--data", str(data), "--threshold", "1.0", "--json", str(strict),
                 "--n-boot", "20"]) == 0
    assert json.loads(strict.read_text())["threshold"] == 1.0


def test_train_says_how_it_split_the_patients(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A DICOM set's user had to open split.json to see whether the PatientIDs kept each patient on one side."""
    from tests.conftest import write_dicom_dataset

    data = write_dicom_dataset(tmp_path / "data", size=16)  # 8 patients a class, 3 films each
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", "cnn", "--image-size", "16",
                 "--epochs", "1", "--quiet", "--val-fraction", "0.25"]) == 0
    counts = json.loads((tmp_path / "run" / "split.json").read_text())["counts"]
    assert counts["val"]["patients"] == 4
    assert (f"split: {48 - 12} training images of 12 patients, 12 validation images of 4 (patient-aware stratified "
            f"split of train; patient keys: --patient-key auto (48 by DICOM PatientID))") in capsys.readouterr().out


def test_train_ends_saying_how_many_files_it_skipped(tiny_dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Each skipped file is named in a warning before training; a long run scrolls them away, so the last lines
    count them."""
    for name in ("IM-0990-0001.jpeg", "IM-0991-0001.jpeg"):
        (tiny_dataset / "train" / "NORMAL" / name).write_bytes(b"\xff\xd8\xff")  # cut off after its first bytes
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--model", "cnn",
                 "--image-size", "16", "--epochs", "1", "--quiet"]) == 0
    split = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("split: "))
    assert split.endswith("; 2 unreadable files skipped (split.json lists them)"), split
    assert len(json.loads((tmp_path / "run" / "split.json").read_text())["skipped"]) == 2


def _write_small_val(root: Path) -> None:
    """ROOT/val with 2 films of each class."""
    from tests.conftest import write_xray

    for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
        for i in range(2):
            write_xray(root / "val" / name / f"IM-09{label}{i}-0001.jpeg", label, 900 + 2 * i + label)


def test_train_says_a_given_val_folder_is_not_used_unless_asked(tiny_dataset: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A Kaggle user expects val/ to be the validation set; it is not, unless --use-given-val."""
    _write_small_val(tiny_dataset)
    common = ["--data", str(tiny_dataset), "--model", "cnn", "--image-size", "16", "--epochs", "1", "--quiet"]
    assert main(["train", "--out", str(tmp_path / "r1"), *common]) == 0
    assert (f"{tiny_dataset / 'val'} (4 images) is not used (validation is carved from train by patient): "
            f"--use-given-val validates on it instead") in capsys.readouterr().out
    assert main(["train", "--out", str(tmp_path / "r2"), "--use-given-val", *common]) == 0
    assert "is not used" not in capsys.readouterr().out
    # a resume keeps the split (--use-given-val is refused there): the note says so, as often as the run is resumed
    for _ in range(2):  # the epoch added, then a run already finished
        assert main(["train", "--out", str(tmp_path / "r1"), "--resume", "--epochs", "2", "--quiet"]) == 0
        assert (f"{tiny_dataset / 'val'} (4 images) is not used (validation is carved from train by patient): a new "
                f"run with --use-given-val validates on it instead") in capsys.readouterr().out
    assert main(["train", "--out", str(tmp_path / "r2"), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert "is not used" not in capsys.readouterr().out


def test_train_warns_when_a_given_val_folder_is_small(tiny_dataset: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Validation AUC 1.0 on 2 films of each class says little: the warning set-threshold gives, with the way out."""
    _write_small_val(tiny_dataset)
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r"), "--use-given-val", "--model",
                 "cnn", "--image-size", "16", "--epochs", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    # 2 films of each class choose the kept epoch and the threshold: said, with the way out
    assert (f"{tiny_dataset / 'val'} holds only 2 NORMAL and 2 PNEUMONIA images: the kept epoch and the threshold are "
            f"chosen on them") in " ".join(err.split())
    assert "drop --use-given-val to validate on a patient split of train" in " ".join(err.split())


def test_train_says_a_manifests_val_rows_are_not_used_unless_asked(tiny_dataset: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A notebook's CSV with a split column: its val rows are ignored without --use-given-val, and the line says so."""
    rows = ["filepaths,labels,split"]
    for name in ("NORMAL", "PNEUMONIA"):
        films = sorted((tiny_dataset / "train" / name).iterdir())
        rows += [f"{f},{name},{'val' if i < 3 else 'train'}" for i, f in enumerate(films)]
    manifest = tmp_path / "films.csv"
    manifest.write_text("\n".join(rows) + "\n")
    assert main(["train", "--data", str(manifest), "--out", str(tmp_path / "r"), "--model", "cnn", "--image-size",
                 "16", "--epochs", "1", "--quiet"]) == 0
    assert (f"the val rows of {manifest} (6 images) are not used (validation is carved from train by patient): "
            f"--use-given-val validates on them instead") in capsys.readouterr().out


def test_predict_reports_bad_file_and_predicts_the_rest(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted((tiny_data / "test" / "NORMAL").iterdir())[:2]
    for path in good:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    code = main(["predict", "--model", str(tiny_run), str(folder), "--json"])
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert code == 1
    assert [r["error"] is None for r in rows].count(True) == 2
    assert "broken.jpeg" in captured.err and "Traceback" not in captured.err
    # the error, and the warning that tiny_run has no guard
    assert [line for line in captured.err.splitlines() if "no chest X-ray guard" not in line] == [
        line for line in captured.err.splitlines() if "broken.jpeg" in line] and len(captured.err.splitlines()) == 2


def test_predict_given_a_manifest_says_to_score_it_with_evaluate(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A CSV manifest given to predict was 'not a readable image'; the line now says where it is scored."""
    films = [sorted((tiny_data / "test" / label).iterdir())[0] for label in ("NORMAL", "PNEUMONIA")]
    manifest = tmp_path / "Site.CSV"
    manifest.write_text(f"path,label\n{films[0]},NORMAL\n{films[1]},PNEUMONIA\n")
    assert main(["predict", "--model", str(tiny_run), str(manifest), str(films[0]), "--json"]) == 1
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["error"] is None for r in rows] == [False, True]  # the image given with it is still predicted
    assert per_film_lines(captured.err) == [f"pneumoscan: error: {manifest}: a CSV file, not an image; predict takes image "
                                    f"files and folders of them, and a labelled manifest (columns path,label) is "
                                    f"scored with `pneumoscan evaluate --data {manifest}`"]
    assert main(["predict", "--model", str(tiny_run), str(tmp_path / "gone.csv")]) == 1  # missing: as any file
    assert "gone.csv: file not found" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(manifest), "--n-boot", "10"]) == 0  # as it says


def test_predict_folder_finds_dicom_named_by_uid(tiny_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import dicom_to_bytes, make_dicom

    folder = tmp_path / "export"
    folder.mkdir()
    pixels = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    (folder / "1.2.840.113619.2.55.3.12345").write_bytes(dicom_to_bytes(make_dicom(pixels)))
    (folder / "notes.txt").write_text("not an image")
    assert main(["predict", "--model", str(tiny_run), str(folder), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(r["path"]).name for r in rows] == ["1.2.840.113619.2.55.3.12345"] and rows[0]["error"] is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--model", "{run}", "--data", "{tmp}/missing"], "no such file or folder"),
        (["predict", "--model", "{tmp}/nomodel", "x.png"], "no such model file"),
        (["predict", "--model", "{run}", "{tmp}/missing.png"], "missing.png"),
        (["evaluate", "--model", "{run}", "--data", "{data}", "--threshold", "0.5", "--target-recall", "0.9"], "not both"),
        (["evaluate", "--model", "{run}", "--data", "{data}", "--prevalence", "1.5"], "--prevalence"),
        (["predict", "--model", "{run}", "--threshold", "0.5", "--prevalence", "0", "{tmp}/missing.png"], "--prevalence 0"),
        (["predict", "--model", "{run}", "--target-recall", "0", "{data}/test"], "--target-recall 0"),
        (["evaluate", "--model", "{run}", "--data", "{data}", "--target-recall", "1.2"], "--target-recall 1.2"),
        (["train", "--data", "{tmp}", "--out", "{tmp}/run"], "found neither"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--model", "nosuch"], "choose one of: cnn"),
        (["pretrain", "--data", "{data}", "--out", "{tmp}/pre", "--model", "nosuch"], "choose one of: cnn"),
        (["pretrain", "--data", "{data}", "--out", "{tmp}/pre", "--model", "ensemble"], "member architectures"),
        (["pretrain", "--data", "{data}", "--out", "{tmp}/pre", "--batch-size", "5000"], "lower --batch-size"),
        (["train", "--out", "{tmp}/nothing", "--resume"], "nothing/config.json: no run to resume here"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--epochs", "0"], "--epochs 0: must be at least 1"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--patience", "0"], "--patience 0"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--batch-size", "0"], "--batch-size 0"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--val-fraction", "1.5"], "--val-fraction 1.5"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--target-recall", "0"], "--target-recall 0"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--lr", "-1"], "--lr -1"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--ema-decay", "2"], "--ema-decay 2"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--aug-zoom", "1"], "--aug-zoom 1.0: must be at least 0"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--augment", "2", "--aug-zoom", "0.5"],
         "--aug-zoom 0.5: must be at least 0, and below 1 once multiplied by --augment"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--aug-aspect", "-0.1"], "--aug-aspect -0.1"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--augment", "2", "--aug-sharpness", "0.6"],
         "--aug-sharpness 0.6: must be at least 0, and at most 1 once multiplied by --augment"),
        (["pretrain", "--data", "{data}", "--out", "{tmp}/pre", "--epochs", "0"], "--epochs 0"),
        (["train", "--data", "{data}", "--out", "{tmp}/run", "--seed", "-1"], "--seed -1: must be 0 to 4294967295"),
        (["pretrain", "--data", "{data}", "--out", "{tmp}/pre", "--split-seed", "-1"],
         "--split-seed -1: must be 0 to 4294967295"),
        (["pretrain", "--data", "{data}", "--out", "{tmp}/pre", "--seed", "4294967296"], "--seed 4294967296: must be"),
        (["ensemble", "{run}", "{run}", "--out", "{tmp}/ens", "--target-recall", "0"], "--target-recall 0"),
        (["ensemble", "{run}", "{tmp}/norun", "--out", "{tmp}/ens"], "norun: not a finished `pneumoscan train` run"),
        # a run's model file said 'not a finished `pneumoscan train` run (no model.safetensors)', as if it had none
        (["ensemble", "{run}", "{run}/model.safetensors", "--out", "{tmp}/ens"],
         "model.safetensors: a file; an ensemble is built from `pneumoscan train` run folders, each with its "
         "model.safetensors and the validation split it was chosen on: pass the run folder"),
        (["ensemble", "{run}", "{run}/", "--out", "{tmp}/ens"], "the same run is given twice"),
        (["set-threshold", "--model", "{run}", "--data", "{data}", "--split", "test", "--out", "{tmp}/new.jpeg"],
         "new.jpeg: looks like an image file; give --out a folder or a .safetensors file"),
        (["fit-guard", "--model", "{run}", "--data", "{data}", "--out", "{run}/model.safetensors"],
         "is a model, not a guard"),
        (["evaluate", "--model", "{run}", "--data", "{data}", "--predictions", "-"],
         "--predictions -: the per-image table is written to a file, not to stdout; give a file name ending in .csv "
         "(only --json takes '-')"),
        (["serve", "--model", "{run}", "--backend", "torch", "--onnx", "{tmp}/m.onnx", "--port", "0"],
         "only the onnx backend uses it"),
        (["fit-guard", "--model", "{run}", "--data", "{data}", "--out", "{tmp}/g.safetensors", "--max-images", "0"],
         "--max-images 0: must be at least 1"),
    ],
)
def test_user_mistakes_are_one_line(argv: list[str], message: str, tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.format(run=tiny_run, tmp=tmp_path, data=tiny_data) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert message in err and "Traceback" not in err
    if argv[0] in ("train", "pretrain") and message.startswith("--"):  # refused before --out is created
        assert not (tmp_path / "run").exists() and not (tmp_path / "pre").exists()


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "{onnx}", "x.png"],
    ["evaluate", "--model", "{onnx}", "--data", "{data}"],
    ["export", "--model", "{onnx}", "--out", "{tmp}/again.onnx"],
    ["fit-guard", "--model", "{onnx}", "--data", "{data}", "--out", "{tmp}/g.safetensors"],
])
def test_model_given_as_onnx_export_says_what_model_takes(argv: list[str], tiny_data: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x08\x12\x07pytorch" + bytes(64))  # any bytes: the name alone is refused
    assert main([a.format(onnx=onnx, data=tiny_data, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "an ONNX export, not a model; --model takes a run folder or a model.safetensors" in err
    assert "header" not in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_operating_point_options(tiny_run: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--model", str(tiny_run), str(tiny_data / "test"), "--json", "--threshold", "0.0"]) == 0
    assert {r["label"] for r in json.loads(capsys.readouterr().out)} == {"PNEUMONIA"}
    assert main(["predict", "--model", str(tiny_run), str(tiny_data / "test"), "--json", "--target-recall", "1.0"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all(r["label"] == "PNEUMONIA" for r in rows if "PNEUMONIA" in r["path"] and r["probability"] >= r["threshold"])
    assert main(["predict", "--model", str(tiny_run), str(tiny_data / "test"), "--json"]) == 0
    base = {r["path"]: r["probability"] for r in json.loads(capsys.readouterr().out)}
    assert main(["predict", "--model", str(tiny_run), str(tiny_data / "test"), "--json", "--prevalence", "0.05"]) == 0
    low = {r["path"]: r["probability"] for r in json.loads(capsys.readouterr().out)}
    assert all(low[p] <= base[p] + 1e-9 for p in base) and any(low[p] < base[p] - 1e-3 for p in base)


@pytest.mark.lists_sample_test_films(reason="audit opens every film of every split, test/ too, for its sizes, "
                                             "unreadable files and the duplicates and patients shared across "
                                             "splits; no model sees them")
def test_audit(sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "audit.json"
    assert main(["audit", str(sample_dir), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["splits"]["train"]["images"] == {"NORMAL": 100, "PNEUMONIA": 100}
    assert report["splits"]["test"]["images"] == {"NORMAL": 30, "PNEUMONIA": 30}
    assert report["splits"]["test"]["most_common_sizes"] == ["224x224"]
    assert report["unreadable"] == []
    assert "unreadable files: 0" in capsys.readouterr().out


def test_audit_finds_duplicates_and_unreadable(tiny_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    first = sorted((data / "train" / "NORMAL").iterdir())[0]
    shutil.copy(first, data / "test" / "NORMAL" / "IM-7777-0001.jpeg")
    (data / "train" / "PNEUMONIA" / "person99_virus_1.jpeg").write_bytes(b"")
    out = tmp_path / "a.json"
    assert main(["audit", str(data), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert len(report["cross_split_duplicates"]) == 1
    assert len(report["unreadable"]) == 1 and "person99_virus_1.jpeg" in report["unreadable"][0]
    counted = {split: info["images"] for split, info in report["splits"].items()}
    on_disk = {split: {c: len(list((data / split / c).iterdir())) for c in ("NORMAL", "PNEUMONIA")} for split in counted}
    on_disk["train"]["PNEUMONIA"] -= 1  # the unreadable file is counted apart
    assert counted == on_disk and report["splits"]["train"]["unreadable"] == 1
    assert report["too_small"] == []


def test_audit_strict_exits_3_on_any_problem_and_0_on_a_clean_dataset(tiny_data: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.data.commands import EXIT_AUDIT_PROBLEMS

    from pneumoscan.parser import build_parser
    from pneumoscan.data.audit import MIN_SIDE

    assert EXIT_AUDIT_PROBLEMS not in (0, 1, 2, 130)  # success, inputs without a prediction, a user mistake, Ctrl+C
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["audit"].format_help().split())
    assert f"exit with code {EXIT_AUDIT_PROBLEMS}" in help_text and f"under {MIN_SIDE} px" in help_text
    assert "DICOM films of a view other than plain frontal (AP or PA) (by their header)" in help_text  # not only
    # lateral, decubitus or oblique: cross-table, lordotic, axial and eponymous views too
    choices = build_parser()._subparsers._group_actions[0].choices
    assert "view codes say it is of a view other than plain frontal (AP or PA)" in " ".join(
        choices["predict"].format_help().split())  # predict's refused_by 'view' said 'lateral, decubitus or oblique'
    clean = tmp_path / "clean"
    for split, first in (("train", 0), ("test", 50)):
        for i in range(first, first + 3):
            write_xray(clean / split / "NORMAL" / f"IM-{i:04d}-0001.png", 0, i)
            write_xray(clean / split / "PNEUMONIA" / f"person{i}_virus_{i}.png", 1, 100 + i)
    assert main(["audit", str(clean), "--strict"]) == 0
    assert "--strict" not in capsys.readouterr().err

    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    first = sorted((data / "train" / "NORMAL").iterdir())[0]
    shutil.copy(first, data / "test" / "NORMAL" / "IM-7777-0001.jpeg")  # a leak: the same film in train and test
    (data / "train" / "PNEUMONIA" / "person99_virus_1.jpeg").write_bytes(b"")
    out = tmp_path / "a.json"
    assert main(["audit", str(data), "--json", str(out)]) == 0  # the default is unchanged
    capsys.readouterr()
    assert main(["audit", str(data), "--json", str(out), "--strict"]) == EXIT_AUDIT_PROBLEMS
    captured = capsys.readouterr()
    assert "unreadable files: 1" in captured.out and json.loads(out.read_text())["unreadable"]  # the report still
    err = captured.err.split("\r")[-1].strip()  # after the progress bar
    assert err.startswith(f"pneumoscan: audit --strict: {data}: 1 unreadable file, 1 group of byte-identical files "
                          "in two splits, ") and "patient IDs in two splits" not in err and len(err.splitlines()) == 1
    from PIL import Image

    # a file-name patient ID in two splits is reported, not failed: Kermany numbers restart in each split
    write_xray(clean / "test" / "NORMAL" / "IM-0000-0002.png", 0, 999)
    assert main(["audit", str(clean), "--strict"]) == 0
    assert "patient IDs in both train+test: 1" in capsys.readouterr().out
    (clean / "test" / "NORMAL" / "IM-0000-0002.png").unlink()
    # each kind alone fails it: a film of 5 x 5 px
    Image.new("L", (5, 5), 100).save(clean / "test" / "NORMAL" / "IM-0099-0001.png")
    assert main(["audit", str(clean), "--strict"]) == EXIT_AUDIT_PROBLEMS
    assert capsys.readouterr().err.endswith(": 1 image under 32 px on a side (exit code 3)\n")


def test_audit_flags_tiny_images(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    data = tmp_path / "d"
    shutil.copytree(tiny_data, data)
    Image.new("L", (5, 5), 100).save(data / "test" / "NORMAL" / "IM-9999-0001.png")
    assert main(["audit", str(data)]) == 0
    out = capsys.readouterr().out
    assert "images under 32 px on a side: 1" in out and "IM-9999-0001.png: 5 x 5 px" in out


def test_evaluate_needs_both_classes(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "normal_only.csv"
    rows = [f"{p},NORMAL" for p in sorted((tiny_data / "test" / "NORMAL").iterdir())]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(manifest), "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert "no readable PNEUMONIA images" in err and err.count("pneumoscan: error") == 1 and "Traceback" not in err

    data = tmp_path / "d"
    shutil.copytree(tiny_data / "test", data / "test")
    for path in (data / "test" / "PNEUMONIA").iterdir():
        path.write_bytes(b"not an image")
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(data), "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert "no readable PNEUMONIA images in test/ (8 unreadable" in err and "Traceback" not in err

    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--n-boot", "0"]) == 2
    assert "--n-boot 0: must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_a_run_folder_below_a_file_names_the_file(command: str, tiny_data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`train --out notes.txt/runs/r` said 'notes.txt/runs/r: Not a directory', naming a path that does not exist:
    the file in the way is named, and the --out it is in the way of."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    out = blocker / "runs" / "r"
    assert main([command, "--data", str(tiny_data), "--out", str(out), "--epochs", "1", "--image-size", "16",
                 "--quiet"]) == 2
    assert capsys.readouterr().err == (f"pneumoscan: error: {blocker}: a file where a folder is needed (for {out}); "
                                       f"check the path and its permissions\n")


@pytest.mark.parametrize("argv", [
    ["evaluate", "--model", "{run}", "--data", "{data}", "--n-boot", "10", "--json", "{blocker}/eval.json"],
    ["evaluate", "--model", "{run}", "--data", "{data}", "--n-boot", "10", "--predictions", "{blocker}/p.csv"],
    ["explain", "--model", "{run}", "{image}", "--out", "{blocker}/heatmap.png"],
    ["export", "--model", "{run}", "--out", "{blocker}/model.onnx", "--images", "{image}"],
    ["fit-guard", "--model", "{run}", "--data", "{data}", "--out", "{blocker}/guard.safetensors"],
    ["report", "{run}", "--out", "{blocker}/report.html", "--n-boot", "10"],
])
def test_unwritable_output_is_one_line(argv: list[str], tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"  # a file where the output's folder should be: mkdir and open both fail
    blocker.write_text("x")
    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    argv = [a.format(run=tiny_run, data=tiny_data, blocker=blocker, image=image) for a in argv]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert f"{blocker}: a file where a folder is needed; check the path" in err and "Traceback" not in err
    if argv[0] == "evaluate":
        assert "accuracy" not in out  # refused before the evaluation, not after it


def test_no_pillow_bomb_warning_below_the_pixel_limit(tiny_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from tests.data.builders import png_header_only

    big = tmp_path / "scan.png"  # 95 MP: over Pillow's warning level, under pneumoscan's 150 MP limit
    big.write_bytes(png_header_only(10_000, 9_500))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", "--model", str(tiny_run), str(big)]) == 1  # header only: truncated
    assert not [w for w in caught if "decompression bomb" in str(w.message)]
    assert "scan.png: not a readable image" in capsys.readouterr().err


def test_evaluate_json_is_strict_json_when_a_metric_is_undefined(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    # nothing reaches threshold 1.0: precision is undefined (NaN), which JSON has no literal for
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--threshold", "1.0",
                 "--json", str(out), "--n-boot", "10"]) == 0

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    summary = json.loads(out.read_text(), parse_constant=refuse)
    assert summary["precision"] == {"value": None, "ci95": [None, None]}
    assert summary["recall"]["value"] == 0.0


def test_evaluate_writes_its_files_even_when_stdout_is_closed(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import sys

    class ClosedPipe(io.StringIO):  # stdout of `pneumoscan evaluate ... | head -1` once head has exited
        def __init__(self, fd: int) -> None:
            super().__init__()
            self.fd = fd

        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            return self.fd

    sink = os.open(tmp_path / "sink", os.O_WRONLY | os.O_CREAT)
    monkeypatch.setattr(sys, "stdout", ClosedPipe(sink))
    out_json, out_csv = tmp_path / "eval.json", tmp_path / "pred.csv"
    main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--json", str(out_json),
          "--predictions", str(out_csv), "--n-boot", "10"])
    os.close(sink)
    assert json.loads(out_json.read_text())["n"] == len(out_csv.read_text().splitlines()) - 1


@pytest.mark.parametrize("command", ["evaluate", "audit", "set-threshold"])
def test_json_to_stdout_is_only_json(command: str, tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv = {"evaluate": ["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--n-boot", "10"],
            "audit": ["audit", str(tiny_data)],
            "set-threshold": ["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test",
                              "--out", str(tmp_path / "site"), "--n-boot", "10", "--backend", "torch"]}[command]
    assert main([*argv, "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert isinstance(json.loads(out), dict)  # the whole of stdout parses
    assert err.strip()  # the text report is on stderr


def test_warnings_and_damaged_dicom_are_one_line_each(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake.dcm"
    # a preamble and a transfer syntax UID that is not one: pydicom warns about both before giving up
    fake.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00abcd" + b"\x08\x00" * 40)
    assert main(["predict", "--model", str(tiny_run), str(fake)]) == 1
    err = capsys.readouterr().err
    assert len(per_film_lines(err)) == 1 and "fake.dcm" in err and ".py:" not in err, err
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--threshold", "1.0",
                 "--n-boot", "10"]) == 0
    err = capsys.readouterr().err
    assert "pneumoscan: warning: precision is undefined" in err and ".py:" not in err, err


def test_a_warning_repeated_word_for_word_is_one_line(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A cache folder that cannot be written warns for each entry it cannot keep: set-threshold decodes its films for
    its check that they are new films, and again to score them."""
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_bytes(b"")
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test",
                 "--out", str(tmp_path / "m"), "--cache-dir", str(not_a_folder), "--backend", "torch",
                 "--n-boot", "10"]) == 0
    err = capsys.readouterr().err
    # one line for the decoded images, one for the films' fingerprints, each once however often it was warned
    lines = [line for line in err.splitlines() if line.startswith(f"pneumoscan: warning: image cache {not_a_folder}: ")]
    assert len(lines) == len(set(lines)) == 2, err
    assert ["images kept in memory" in lines[0], "film fingerprints kept in memory" in lines[1]] == [True, True], err


def test_train_refused_on_its_data_leaves_no_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path / "typo"), "--out", str(tmp_path / "run")]) == 2
    assert "no such file or folder" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_an_empty_folder_among_inputs_is_one_failed_input(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    film = sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    assert main(["predict", "--model", str(tiny_run), str(empty), str(film), "--json"]) == 1
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["path"] for r in rows] == [str(empty), str(film)] and rows[1]["probability"] is not None
    assert "folder holds no image files" in rows[0]["error"] and "folder holds no image files" in captured.err
    assert main(["predict", "--model", str(tiny_run), str(empty)]) == 2  # alone, it is the whole request


def _deny_reading(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Reading `path` fails as it would for a file without read permission (root ignores the bits)."""
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


def test_a_file_that_cannot_be_read_is_listed_by_audit_and_predict_goes_on(
        tiny_run: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    locked = sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    _deny_reading(monkeypatch, locked)
    assert main(["audit", str(tiny_data), "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unreadable"] == [f"{locked}: cannot read the file (Permission denied); check it exists and is readable"]
    assert main(["predict", "--model", str(tiny_run), str(locked.parent), "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [r["error"] is not None for r in rows] == [True] + [False] * (len(rows) - 1)


def test_train_names_unreadable_files_that_leave_a_split_without_a_class(tiny_dataset: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for film in (tiny_dataset / "train" / "PNEUMONIA").iterdir():
        film.write_text("not an image")
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--image-size", "16", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "split has no readable PNEUMONIA images" in err and "not a readable image" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_file_names_that_are_not_utf8_are_read_written_and_printed(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    data = tmp_path / "site"
    shutil.copytree(tiny_data / "test", data)
    film = sorted((data / "NORMAL").iterdir())[0]
    odd = os.fsdecode(bytes(data / "NORMAL") + b"/r\xf6ntgen.jpeg")  # as from a Windows share or an old zip
    film.rename(odd)
    csv_out = tmp_path / "p.csv"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(data), "--n-boot", "10",
                 "--predictions", str(csv_out)]) == 0
    from pneumoscan.evaluation.evaluate import read_predictions

    assert Path(odd) in read_predictions(csv_out)[0]  # the name reads back byte for byte
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # strict, as under en_US.UTF-8
    command = "import sys; from pneumoscan.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", command, "predict", "--model", str(tiny_run), odd],
                          capture_output=True, env=env)
    assert done.returncode == 0 and b"r\\udcf6ntgen.jpeg" in done.stdout, done.stderr.decode(errors="replace")


def test_a_broken_link_among_the_films_is_reported_and_the_rest_evaluated(tiny_run: Path, tiny_data: Path,
                                                                          tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import os

    data = tmp_path / "site"
    shutil.copytree(tiny_data / "test", data)
    os.symlink(tmp_path / "moved.jpeg", data / "NORMAL" / "IM-0999-0001.jpeg")
    os.symlink(tmp_path / "moved", data / "NORMAL" / "1.2.840.113619.2.55.3.99")  # a DICOM UID name
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(data), "--n-boot", "10"]) == 0
    err = capsys.readouterr().err
    assert err.count("which does not exist; fix or remove the link") == 2


def test_explain_draws_a_file_name_that_is_not_utf8(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    import os

    film = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    odd = os.fsdecode(bytes(tmp_path) + b"/k\xf6rper.jpeg")
    shutil.copy(film, odd)
    assert main(["explain", odd, "--model", str(tiny_run), "--out", str(tmp_path / "h.png")]) == 0


def test_python_dash_m_runs_the_same_command_line(tmp_path: Path) -> None:
    """`python -m pneumoscan` is the `pneumoscan` command: same name in its messages, same exit codes."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pneumoscan", "audit", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("pneumoscan: error:") and "missing" in done.stderr
    version = subprocess.run([sys.executable, "-m", "pneumoscan", "--version"], capture_output=True, text=True,
                             timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("pneumoscan ")


@pytest.mark.parametrize("command", ["train", "pretrain", "audit"])
def test_every_command_that_keys_patients_offers_patient_key(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--patient-key {auto,name,folder}" in text and "DICOM PatientID" in text
    assert "NORMAL/pt7/a.dcm -> pt7" in text


def test_audit_patient_key_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A placeholder PatientID is one warning line naming it; --patient-key folder reads the patient folders, and an
    image outside one is listed in the report."""
    for i in range(3):
        for label, cls in enumerate(("NORMAL", "PNEUMONIA")):
            write_dicom(tmp_path / "train" / cls / f"pt{i}" / f"film{10 * i + label}.dcm", label, 10 * i + label,
                        patient_id="0")
    out = tmp_path / "a.json"
    assert main(["audit", str(tmp_path / "train"), "--json", str(out)]) == 0
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "PatientID" in line]
    assert line.startswith("pneumoscan: warning: PatientID '0' on 6 of the 6 DICOM files with a PatientID in their "
                           "header (readable films or not): taken for "
                           "a placeholder")
    report = json.loads(out.read_text())
    assert report["patient_key"] == "auto" and report["patient_keys_from"] == {"name": 6}  # each file its own patient
    assert report["splits"]["all"]["patients"] == {"NORMAL": 3, "PNEUMONIA": 3}
    assert main(["audit", str(tmp_path / "train"), "--json", str(out), "--patient-key", "folder"]) == 0
    assert "PatientID" not in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["patient_key"] == "folder" and report["patient_keys_from"] == {"folder": 6}
    assert report["splits"]["all"]["patients"] == {"NORMAL": 3, "PNEUMONIA": 3}
    loose = write_dicom(tmp_path / "train" / "NORMAL" / "loose.dcm", 0, 99)
    assert main(["audit", str(tmp_path / "train"), "--json", str(out), "--patient-key", "folder"]) == 0  # listed
    assert capsys.readouterr().err == ""
    assert json.loads(out.read_text())["no_patient_folder"] == [loose.relative_to(tmp_path / "train").as_posix()]


@pytest.mark.parametrize("command", ["evaluate", "set-threshold", "report", "compare"])
def test_every_command_that_decodes_a_data_set_takes_cache_dir(command: str, tiny_run: Path, tiny_data: Path,
                                                               tmp_path: Path, isolated_cache: Path) -> None:
    """train, fit-guard and ensemble took --cache-dir, and the cache's own warning names it, but the commands
    scoring a labelled split refused it: a run trained with --cache-dir was decoded again into ~/.cache."""
    cache = tmp_path / "site_cache"
    args = {"evaluate": ["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--n-boot", "5"],
            "set-threshold": ["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--n-boot", "5",
                              "--split", "test", "--out", str(tmp_path / "site")],
            "report": ["report", str(tiny_run), "--data", str(tiny_data), "--n-boot", "5", "--cases", "1",
                       "--out", str(tmp_path / "report.html")],
            "compare": ["compare", str(tiny_run), "--data", str(tiny_data), "--n-boot", "5",
                        "--out", str(tmp_path / "compare.html")]}[command]
    assert main([*args, "--cache-dir", str(cache)]) == 0
    assert list(cache.glob("*.npy")) and not list(isolated_cache.glob("*.npy"))


def test_train_ends_with_the_fit_guard_command_until_the_run_has_a_guard(tiny_dataset: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # a run has no guard until fit-guard, which nothing said: its predictions then refused nothing, a photo neither
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--epochs", "1", "--image-size", "16",
                 "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"next: `pneumoscan fit-guard --model {run} --data {tiny_dataset}` fits its chest X-ray guard; until then "
        f"predict and serve score any image, a photo too, instead of refusing it")
    (run / "model.ood.safetensors").write_bytes(b"")  # only whether it is there counts
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 0  # finished: says so, prints its figures
    assert "fit-guard" not in capsys.readouterr().out


def test_ensemble_ends_with_the_fit_guard_command_as_train_does(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # train said it, ensemble did not: its model scored a photo too, and nothing had said how to fit its guard
    second = tmp_path / "r2"
    assert main(["train", "--data", str(tiny_data), "--out", str(second), "--model", "resnet10", "--image-size", "32",
                 "--epochs", "1", "--batch-size", "16", "--val-fraction", "0.2", "--seed", "7", "--quiet"]) == 0
    capsys.readouterr()
    ens = tmp_path / "ens"
    assert main(["ensemble", str(tiny_run), str(second), "--out", str(ens), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"next: `pneumoscan fit-guard --model {ens} --data {tiny_data}` fits its chest X-ray guard; until then "
        f"predict and serve score any image, a photo too, instead of refusing it")


def _colour_photo(path: Path) -> Path:
    """A colour picture (random colours), which a model without a guard scores as it would a film."""
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_predict_and_explain_say_once_that_a_model_without_a_guard_scores_a_photo_too(
        tiny_run: Path, tiny_data: Path, fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a run or ensemble without its guard gave a photo 'NORMAL P(pneumonia)=0.4918', exit 0, nothing on stderr;
    # serve warned, predict and explain did not
    photo, film = _colour_photo(tmp_path / "photo.png"), sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    said = (f"pneumoscan: warning: {tiny_run / 'model.safetensors'}: this model has no chest X-ray guard, so every "
            f"film gets a probability, a photo or an upside-down film too, instead of being refused; fit one with "
            f"`pneumoscan fit-guard --model {tiny_run} --data {tiny_data}`")
    for fmt in ([], ["--csv"], ["--json"]):
        assert main(["predict", "--model", str(tiny_run), str(photo), str(film), str(photo), *fmt]) == 0
        assert capsys.readouterr().err.splitlines().count(said) == 1  # once for the command, not a line a film
    assert main(["explain", "--model", str(tiny_run), str(photo), "--out", str(tmp_path / "h.png")]) == 0
    warned, note = capsys.readouterr().err.splitlines()  # the warning once, then the threshold's note
    assert warned == said and note.startswith("pneumoscan: note: PNEUMONIA at P(pneumonia) >= ")
    missing = tmp_path / "missing.png"  # no film to score: its error alone, no warning before it
    assert main(["explain", "--model", str(tiny_run), str(missing), "--out", str(tmp_path / "m.png")]) != 0
    assert said not in capsys.readouterr().err
    assert main(["predict", "--model", str(fitted), str(photo), str(film)]) == 1  # guarded: the photo is refused
    assert "no chest X-ray guard" not in capsys.readouterr().err


def test_predict_and_explain_say_on_stderr_the_threshold_they_label_at_and_where_it_came_from(
        tiny_run: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 'NORMAL P(pneumonia)=0.5917' at the shipped threshold 0.6151 read as a bug: the text never showed it
    from pneumoscan.artifact import read_meta

    meta, films = read_meta(tiny_run / "model.safetensors"), sorted((tiny_data / "test" / "NORMAL").iterdir())[:2]
    notes = {(): f"PNEUMONIA at P(pneumonia) >= {meta.threshold:.4f}; operating point: threshold from the model's own "
                 f"(for recall 0.95 on the validation films); P for a prevalence of 0.5 (the model's prior; no "
                 f"--prevalence)",
             ("--threshold", "0.3"): "PNEUMONIA at P(pneumonia) >= 0.3000; operating point: threshold from "
                                     "--threshold; P for a prevalence of 0.5 (the model's prior; no --prevalence)"}
    for options, note in notes.items():
        assert main(["predict", "--model", str(tiny_run), *map(str, films), *options]) == 0
        captured = capsys.readouterr()
        assert captured.err.splitlines().count(f"pneumoscan: note: {note}") == 1
        assert all(line.startswith(("NORMAL     P(pneumonia)=", "PNEUMONIA  P(pneumonia)="))  # stdout as before
                   for line in captured.out.splitlines()) and len(captured.out.splitlines()) == 2
    # explain too: its line 'PNEUMONIA  P(pneumonia)=0.0488' (with --prevalence 0.05) did not say the threshold
    for options, note in notes.items():
        assert main(["explain", "--model", str(tiny_run), str(films[0]), "--out", str(tiny_data.parent / "h.png"),
                     *options]) == 0
        captured = capsys.readouterr()
        assert captured.err.splitlines().count(f"pneumoscan: note: {note}") == 1
        assert captured.out.startswith(("NORMAL     P(pneumonia)=", "PNEUMONIA  P(pneumonia)="))  # stdout as before
    assert main(["predict", "--model", str(tiny_run), str(films[0]), "--csv"]) == 0  # a column says it there
    assert "pneumoscan: note: PNEUMONIA at" not in capsys.readouterr().err
    empty = tiny_data.parent / "empty_folder"
    empty.mkdir()
    assert main(["predict", "--model", str(tiny_run), str(empty)]) == 2  # no film: the error alone, no note before it
    assert capsys.readouterr().err.splitlines()[0].startswith(f"pneumoscan: error: {empty}: folder holds no image")


def test_every_commands_help_says_what_the_command_does() -> None:
    # `pneumoscan explain --help` (train, export, serve, ...) began with usage and options, never saying what it does
    import argparse

    from pneumoscan.parser import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for action in sub._choices_actions:
        description = sub.choices[action.dest].description
        assert description and description.lower().startswith(action.help.replace("%%", "%")[:20].lower()), action.dest
    explain = " ".join(sub.choices["explain"].format_help().split())
    assert "Grad-CAM heatmap of where the model looked, over the original image." in explain
    evaluate = " ".join(sub.choices["evaluate"].format_help().split())
    assert "Metrics with 95% intervals on a labelled split." in evaluate  # help's %% is argparse's escape


@pytest.mark.parametrize("flag", ["--csv", "--json"])
def test_predict_given_a_file_after_csv_or_json_says_they_print_to_stdout(flag: str, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # evaluate --json takes a file; predict's --csv and --json print, and a file after them was only
    # "unrecognized arguments: preds.csv"
    with pytest.raises(SystemExit) as stop:
        main(["predict", str(tmp_path), flag, "preds.out"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan predict: error: {flag} prints to stdout and takes no file name (preds.out); write the file with "
        f"`pneumoscan predict ... {flag} > preds.out`")
    with pytest.raises(SystemExit):  # any other stray argument is argparse's, with predict's usage
        main(["predict", str(tmp_path), "--quiet", "preds.out"])
    assert capsys.readouterr().err.splitlines()[-1] == "pneumoscan predict: error: unrecognized arguments: preds.out"


@pytest.mark.parametrize("argv", [["evaluate", "--data", "d", "test"], ["explain", "a.jpeg", "--bogus"],
                                  ["train", "--out", "r", "--epochs", "2", "3"]])
def test_a_stray_argument_is_refused_with_the_commands_own_usage(argv: list[str],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # the error came with the top-level usage, `pneumoscan [-h] [--version] COMMAND ...`, which says nothing of
    # what the command takes
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: pneumoscan {argv[0]} ") and "COMMAND ..." not in err
    assert err.splitlines()[-1] == f"pneumoscan {argv[0]}: error: unrecognized arguments: {argv[-1]}"
    with pytest.raises(SystemExit):  # one before the command stays the program's
        main(["--bogus", *argv[:-1]])
    assert capsys.readouterr().err.splitlines()[-1] == "pneumoscan: error: unrecognized arguments: --bogus"


@pytest.mark.parametrize("flag", ["--csv", "--json"])
@pytest.mark.parametrize("where", ["after", "before"])
def test_predict_given_a_dash_after_csv_or_json_says_to_leave_it_out(flag: str, where: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # the README's '--json - writes JSON alone to stdout' (evaluate, audit, ...) tried on predict: after the films
    # the error said to write the file with `--json > -`; before them '-' was read as a film ('file not found')
    argv = ["predict", str(tmp_path), flag, "-"] if where == "after" else ["predict", flag, "-", str(tmp_path)]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan predict: error: {flag} prints to stdout already and takes no file name; leave out the '-' after it")


@pytest.mark.parametrize("flag", ["--csv", "--json", "--quiet"])
def test_predict_given_a_film_after_an_option_says_to_give_it_first(flag: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # `predict a.png --csv b.png`, b.png a film: it said to write the file with `predict ... --csv > b.png`, which
    # would overwrite the film (a folder: `> folder`, which the shell refuses); after --quiet, 'unrecognized arguments'
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "more").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["predict", "a.png", flag, "b.png", "more", "--backend", "torch"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "pneumoscan predict: error: b.png, more after an option are films or folders; give every film before the "
        f"options: `pneumoscan predict a.png b.png more {flag} --backend torch`")


@pytest.mark.parametrize(("argv", "said"), [
    (["a.png", "--cs", "-"], "--csv prints to stdout already and takes no file name; leave out the '-' after it"),
    (["a.png", "--js", "out.json"], "--json prints to stdout and takes no file name (out.json); write the file with "
                                    "`pneumoscan predict ... --json > out.json`"),
    (["a.png", "--csv", "--", "b.png"], "b.png after an option is a film or folder; give every film before the "
                                        "options: `pneumoscan predict a.png b.png --csv`")],
    ids=["abbreviated-dash", "abbreviated-file", "double-dash"])
def test_predict_csv_or_json_abbreviated_or_before_a_double_dash_is_told_as_given_in_full(
        argv: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # argparse takes --cs for --csv: `--cs -` said 'unrecognized arguments: -', `--js out.json` 'unrecognized
    # arguments: out.json'; a '--' after --csv was called its file name: 'takes no file name (--); write the file
    # with `pneumoscan predict ... --csv > --`'
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["predict", *argv])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"pneumoscan predict: error: {said}"


@pytest.mark.parametrize("flag", ["--csv", "--json"])
@pytest.mark.parametrize("where", ["after", "before"])
def test_predict_given_an_empty_argument_after_csv_or_json_says_to_leave_it_out(
        flag: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `predict FILMS --csv "$OUT"`, OUT unset: it said 'takes no file name (); write the file with `... --csv > ''`',
    # naming nothing; before the films, 'the PATHS argument is empty'
    argv = ["predict", str(tmp_path), flag, ""] if where == "after" else ["predict", flag, "", str(tmp_path)]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan predict: error: {flag} prints to stdout already and takes no file name; leave out the empty "
        f'argument (an unset shell variable, as in `{flag} "$VAR"`?) after it')


def test_predict_given_a_dash_for_a_film_says_to_give_dev_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`cat film.jpeg | pneumoscan predict -` said '-: file not found; check the path' (exit code 1)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["predict", "-"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "pneumoscan predict: error: '-' is not a film: predict reads files, not standard input; for a film piped in, "
        "give /dev/stdin (`... | pneumoscan predict /dev/stdin`)")
    (tmp_path / "-").write_bytes(b"")  # a file named '-' is a file like any other
    assert main(["predict", "--quiet", "-"]) == 1
    assert per_film_lines(capsys.readouterr().err) == [
        "pneumoscan: error: -: empty file (0 bytes); give a JPEG, PNG, TIFF, BMP or DICOM file"]


@pytest.mark.parametrize("flag,name", [("--csv", "preds.csv"), ("--json", "Preds.JSON")])
def test_predict_given_a_file_after_csv_or_json_before_the_films_says_they_print_to_stdout(
        flag: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `predict --csv preds.csv FILM`: the file name was taken for a film to predict, so the command printed the
    # film's row to stdout and stopped with 'preds.csv: file not found; check the path' (exit code 1)
    with pytest.raises(SystemExit) as stop:
        main(["predict", flag, name, str(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan predict: error: {flag} prints to stdout and takes no file name ({name}); write the file with "
        f"`pneumoscan predict ... {flag} > {name}`")


def test_evaluate_records_its_operating_point(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--prevalence moves the probabilities and the threshold: the JSON and the header say so, and where the
    threshold came from, so two evaluations of one model can be told apart."""
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--target-recall", "0.9",
                 "--prevalence", "0.1", "--json", str(out), "--n-boot", "10"]) == 0
    point = json.loads(out.read_text())["operating_point"]
    assert {k: point[k] for k in ("threshold_from", "target_recall", "chosen_on", "prevalence", "prevalence_from")} \
        == {"threshold_from": "target_recall", "target_recall": 0.9, "chosen_on": "validation", "prevalence": 0.1,
            "prevalence_from": "prevalence"}
    assert point["threshold"] == json.loads(out.read_text())["threshold"]
    assert ("  operating point: threshold from --target-recall 0.9 on the validation films; P for a prevalence of 0.1 "
            "(--prevalence, the threshold moved with it)\n") in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--threshold", "0.3",
                 "--json", str(out), "--n-boot", "10"]) == 0
    point = json.loads(out.read_text())["operating_point"]
    assert (point["threshold_from"], point["chosen_on"], point["prevalence_from"]) == ("threshold", None, "model_prior")
    assert (f"  operating point: threshold from --threshold; P for a prevalence of {point['prevalence']:g} (the "
            f"model's prior; no --prevalence)\n") in capsys.readouterr().out


def test_a_warning_made_an_error_by_the_user_is_one_line_and_exit_code_4(tiny_run: Path, tiny_data: Path,
                                                                         tmp_path: Path) -> None:
    """With -W error or PYTHONWARNINGS=error, pneumoscan's warnings (no guard; in-sample films) were tracebacks."""
    import os
    import subprocess
    import sys

    film = sorted((tiny_data / "train" / "NORMAL").iterdir())[0]
    runs = {"no chest X-ray guard": ([sys.executable, "-m", "pneumoscan", "predict", "--model", str(tiny_run),
                                      str(film)], {"PYTHONWARNINGS": "error"}),
            "films this model was trained or validated on": (
                [sys.executable, "-W", "error", "-m", "pneumoscan", "evaluate", "--model", str(tiny_run), "--data",
                 str(tiny_data), "--split", "train", "--n-boot", "10", "--cache-dir", str(tmp_path)], {})}
    for words, (argv, env) in runs.items():
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env={**os.environ, **env})
        errors = [line for line in done.stderr.splitlines() if not line.startswith("pneumoscan: note: ")]
        assert done.returncode == 4, done.stderr
        assert len(errors) == 1 and errors[0].startswith("pneumoscan: error: ") and words in errors[0], done.stderr
        assert errors[0].endswith("(a warning, which -W error or PYTHONWARNINGS=error makes an error: exit code 4)")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full (every write to it finds a full disk)")
def test_stdout_on_a_full_disk_is_one_line_naming_it_not_a_traceback(tiny_run: Path, tiny_data: Path,
                                                                     tmp_path: Path) -> None:
    """`pneumoscan predict DIR --csv > out.csv` on a full disk ended in a traceback (OSError: [Errno 28])."""
    import subprocess
    import sys

    folder = str(tiny_data / "train" / "NORMAL")
    for argv in (["predict", "--model", str(tiny_run), folder, "--csv"], ["models"],
                 ["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "train", "--n-boot", "10",
                  "--cache-dir", str(tmp_path)]):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "pneumoscan", *argv], stdout=full, stderr=subprocess.PIPE,
                                  text=True, timeout=300)
        errors = [line for line in done.stderr.splitlines() if line.startswith("pneumoscan: error: ")]
        assert done.returncode == 2 and "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
        assert errors == ["pneumoscan: error: stdout (/dev/full): No space left on device; the output is cut short: "
                          "free space (or write it elsewhere) and run the command again"], done.stderr


@pytest.mark.parametrize("command", ["predict", "evaluate", "evaluate --predictions"])
def test_a_closed_stdout_is_one_line_not_a_traceback_nor_a_silent_loss(command: str, tiny_run: Path, tiny_data: Path,
                                                                       tmp_path: Path) -> None:
    """`pneumoscan predict FILM >&-` ended in a traceback ('NoneType' object has no attribute 'write'); `evaluate`
    exited 0 with its report lost, and so did `evaluate --predictions FILE`, whose CSV is not what it is run for."""
    import os
    import subprocess
    import sys

    film = sorted((tiny_data / "train" / "NORMAL").iterdir())[0]
    argv = {"predict": ["predict", "--model", str(tiny_run), str(film)],
            "evaluate": ["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "train",
                         "--n-boot", "10", "--cache-dir", str(tmp_path)]}
    argv["evaluate --predictions"] = [*argv["evaluate"], "--predictions", str(tmp_path / "rows.csv")]
    done = subprocess.run([sys.executable, "-m", "pneumoscan", *argv[command]], stderr=subprocess.PIPE, text=True,
                          timeout=300, preexec_fn=lambda: os.close(1))
    name = command.split()[0]
    assert (done.returncode, done.stderr) == (2, f"pneumoscan: error: stdout is closed, so the output of {name} "
                                                 f"would be lost; send it to a file (> out.txt) or to /dev/null\n")


def test_the_fit_guard_command_a_warning_gives_can_be_pasted_for_a_path_with_a_space(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`fit one with `pneumoscan fit-guard --model my runs/r 1 --data ...`` split the path in two in a shell."""
    import shlex

    run = tmp_path / "my runs" / "r 1"
    shutil.copytree(tiny_run, run)
    film = sorted((tiny_data / "train" / "NORMAL").iterdir())[0]
    assert main(["predict", "--model", str(run), str(film)]) == 0
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if "no chest X-ray guard" in line]
    command = warning.split("`")[1]
    assert shlex.split(command) == ["pneumoscan", "fit-guard", "--model", str(run), "--data", str(tiny_data)]


def test_the_commands_predict_and_a_stopped_run_suggest_can_be_pasted_for_a_path_with_a_space(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path with a space in a suggested command (`pneumoscan evaluate --data my list.csv`) split in two in a
    shell."""
    import argparse
    import shlex

    from pneumoscan.cli import _resume_hint

    manifest = tmp_path / "my list.csv"
    manifest.write_text("path,label\n")
    film = write_xray(tmp_path / "a film.png", 0, 1)
    assert main(["predict", str(manifest)]) == 1  # an input without a prediction
    assert shlex.split(capsys.readouterr().err.split("`")[1]) == ["pneumoscan", "evaluate", "--data", str(manifest)]
    with pytest.raises(SystemExit):
        main(["predict", str(film), "--csv", str(tmp_path / "my rows.csv")])
    assert shlex.split(capsys.readouterr().err.split("`")[1])[-2:] == [">", str(tmp_path / "my rows.csv")]
    run = tmp_path / "my runs" / "r 1"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    hint = _resume_hint(argparse.Namespace(command="train", out=str(run)))
    assert shlex.split(hint.split("`")[1]) == ["pneumoscan", "train", "--out", str(run), "--resume"]


@pytest.mark.parametrize("unbuffered", [True, False], ids=["unbuffered", "buffered"])
def test_a_write_to_stdout_that_only_partly_fits_fails_instead_of_cutting_the_output(
        unbuffered: bool, tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """Under `ulimit -f` (or a disk filling mid-write) Python's unbuffered stdout (PYTHONUNBUFFERED=1, python -u)
    dropped what a short write left: `predict --csv > out.csv` exited 0 with its last rows cut. Buffered (the
    default) it must fail alike."""
    import os
    import resource
    import subprocess
    import sys

    out = tmp_path / "out.csv"
    limit = 4096

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    env.update({"PYTHONUNBUFFERED": "1"} if unbuffered else {})
    with out.open("w") as stdout:
        done = subprocess.run([sys.executable, "-m", "pneumoscan", "predict", "--model", str(tiny_run), "--csv",
                               str(tiny_data / "train")], stdout=stdout, stderr=subprocess.PIPE, text=True,
                              timeout=300, preexec_fn=limited, env=env)
    assert out.stat().st_size == limit  # the rows do not fit: the output is cut, and must say so
    errors = [line for line in done.stderr.splitlines() if line.startswith("pneumoscan: error: ")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert errors == [f"pneumoscan: error: stdout ({out}): File too large; the output is cut short: the file reached "
                      f"a size limit (a `ulimit -f` limit, or FAT32's 4 GB per file): raise the limit (or write it to "
                      f"another disk) and run the command again"], done.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full (every write to it finds a full disk)")
def test_stdout_and_stderr_on_a_full_disk_still_exit_2(tmp_path: Path) -> None:
    """`pneumoscan models > log 2>&1` on a full disk exited 1: the error's own line to stderr raised ENOSPC."""
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "pneumoscan", "models"], stdout=full, stderr=full, timeout=300)
    assert done.returncode == 2


@pytest.mark.parametrize("code, fix", [
    (errno.ENOSPC, "free space (or write it elsewhere); continue the run with `pneumoscan train --out {run} --resume`"),
    (errno.EFBIG, "the file reached a size limit (a `ulimit -f` limit, or FAT32's 4 GB per file): raise the limit (or "
                  "write it to another disk); continue the run with `pneumoscan train --out {run} --resume`")])
def test_train_cut_short_by_a_full_stdout_says_how_to_resume_by_errno(
        code: int, fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`train > log` on a full disk said to run the command again, which then refused ('pass --resume'); and said
    to free space for a file-size limit (EFBIG), which free space does not lift."""
    import argparse
    import os
    import sys

    from pneumoscan.cli import _run_command

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")

    def full(args: argparse.Namespace) -> int:
        raise OSError(code, os.strerror(code))

    log = tmp_path / "log.txt"
    with log.open("w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)  # `train > log.txt`
        args = argparse.Namespace(command="train", out=str(run), func=full)
        assert _run_command(args) == 2
    assert capsys.readouterr().err == (f"pneumoscan: error: stdout ({log}): {os.strerror(code)}; the output is cut short: "
                                       f"{fix.format(run=run)}\n")


@pytest.mark.parametrize("command", ["export", "evaluate --json", "audit --json"])
def test_a_closed_stdout_does_not_stop_a_command_whose_result_is_a_file(command: str, tiny_run: Path, tiny_data: Path,
                                                                        tmp_path: Path) -> None:
    """The closed-stdout refusal (exit 2) stopped every command, `export` and `evaluate --json FILE` too, whose result
    is the file they write and which ran before it."""
    import os
    import subprocess
    import sys

    film = sorted((tiny_data / "train" / "NORMAL").iterdir())[0]
    out = tmp_path / {"export": "model.onnx"}.get(command, "out.json")
    argv = {"export": ["export", "--model", str(tiny_run), "--out", str(out), "--images", str(film)],
            "evaluate --json": ["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "train",
                                "--n-boot", "10", "--cache-dir", str(tmp_path), "--json", str(out)],
            "audit --json": ["audit", str(tiny_data), "--json", str(out)]}[command]
    done = subprocess.run([sys.executable, "-m", "pneumoscan", *argv], stderr=subprocess.PIPE, text=True, timeout=300,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == 0 and "stdout is closed" not in done.stderr, done.stderr
    assert out.stat().st_size > 0


def test_a_closed_stdout_descriptor_is_not_given_to_the_files_a_command_writes(tmp_path: Path) -> None:
    """With stdout closed (`>&-`) a command that runs anyway (its result is files) would open its first file as
    descriptor 1, where anything printed to stdout by a library would land in that file."""
    import os
    import subprocess
    import sys

    probe = ("import os, sys\nfrom pneumoscan import cli\ncli._fill_closed_descriptor(1)\n"
             "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\nprint(fd, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "out.txt")], stderr=subprocess.PIPE, text=True,
                          timeout=300, preexec_fn=lambda: os.close(1))
    assert done.returncode == 0 and int(done.stderr.strip()) != 1, done.stderr


def test_a_closed_pipe_reported_as_einval_on_windows_exits_1_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`pneumoscan models | head -1` on Windows, whose closed pipe may raise EINVAL rather than EPIPE (CPython
    #79935): a traceback before; now as a broken pipe, exit code 1 and nothing on stderr."""
    import errno
    import os
    import sys

    from pneumoscan import stream_failures

    class ClosedPipe(io.StringIO):
        def __init__(self, fd: int) -> None:
            super().__init__()
            self.fd = fd

        def write(self, text: str) -> int:
            raise OSError(errno.EINVAL, "Invalid argument")

        def fileno(self) -> int:
            return self.fd

    sink = os.open(tmp_path / "sink", os.O_WRONLY | os.O_CREAT)
    monkeypatch.setattr(sys, "stdout", ClosedPipe(sink))
    monkeypatch.setattr(stream_failures, "WINDOWS", True)
    code = main(["models"])
    os.close(sink)
    assert code == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [["evaluate", "--model", "RUN", "DATA"], ["train", "DATA", "--out", "runs/r"],
                                  ["set-threshold", "DATA", "--model", "RUN", "--out", "site"],
                                  ["pretrain", "--out", "pre", "DATA"], ["fit-guard", "--model", "RUN", "DATA"]],
                         ids=["evaluate", "train", "set-threshold", "pretrain", "fit-guard"])
def test_data_given_bare_is_refused_with_the_command_as_it_should_read(argv: list[str], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`audit DATA` and `predict FILMS` take their data bare; `evaluate DATA` was told only that --data is required
    (train: 'unrecognized arguments: DATA'). The data folder found bare is named, with the command fixed."""
    (tmp_path / "DATA").mkdir()
    (tmp_path / "RUN").mkdir()  # an option's value that is a folder is no data given bare
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    at = argv.index("DATA")
    fixed = " ".join(["pneumoscan", *argv[:at], "--data", *argv[at:]])
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan {argv[0]}: error: DATA: the data is given with --data, not bare: `{fixed}`")


@pytest.mark.parametrize("argv", [["train", "DATA", "-h"], ["set-threshold", "DATA", "--help"],
                                  ["pretrain", "--he", "DATA"], ["-h", "fit-guard", "DATA"],
                                  ["--version", "train", "DATA"]],
                         ids=["train-h", "set-threshold-help", "pretrain-abbreviated", "program-h", "version"])
def test_help_or_version_is_answered_with_data_given_bare(argv: list[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """-h anywhere prints the help, exit code 0, as before 15bc795: `train DATA -h` was refused ('DATA: the data is
    given with --data, not bare: `pneumoscan train --data DATA -h`'), exit code 2."""
    (tmp_path / "DATA").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    said = capsys.readouterr()
    assert said.err == ""
    assert said.out.startswith("usage: pneumoscan") or said.out.startswith("pneumoscan ")


@pytest.mark.parametrize(("argv", "said"), [
    (["train", "OTHER", "--data", "DATA", "--out", "runs/r"], "unrecognized arguments: OTHER"),
    (["evaluate", "RUN", "--data", "DATA"], "unrecognized arguments: RUN"),
    (["fit-guard", "RUN", "--dat=DATA"], "unrecognized arguments: RUN"),
    (["set-threshold", "RUN", "--out", "site"], "the following arguments are required: --data")],
    ids=["train-data-given", "evaluate-run", "fit-guard-abbreviated", "set-threshold-run"])
def test_a_bare_folder_is_not_called_the_data_when_data_is_given_or_it_is_a_run(
        argv: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """With --data given, a folder left bare is something else (a run meant for --model): it was told 'the data is
    given with --data, not bare', fixed as `evaluate --data RUN --data DATA`; so was a run folder without --data."""
    for name in ("DATA", "OTHER", "RUN"):
        (tmp_path / name).mkdir()
    (tmp_path / "RUN" / "model.safetensors").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"pneumoscan {argv[0]}: error: {said}"


@pytest.mark.parametrize(("argv", "said"), [
    (["train", "--data", "{data}", "--out", ""], '--out is empty (an unset shell variable, as in `--out "$VAR"`?)'),
    (["predict", "{film}", ""], 'the PATHS argument is empty (an unset shell variable, as in `"$VAR"`?)'),
    (["audit", ""], 'the DATA argument is empty (an unset shell variable, as in `"$VAR"`?)'),
    (["audit", "{data}", ""], 'an argument is empty (an unset shell variable, as in `"$VAR"`?)'),  # 'unrecognized
    # arguments: ', naming nothing, before
], ids=["train-out", "predict-film", "audit-data", "audit-left-over"])
def test_an_empty_argument_is_refused_not_taken_for_the_current_folder(
        argv: list[str], said: str, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """'' (an unset shell variable: `--out "$RUN"`) is the current folder as a path: `train --out ""` wrote its run
    files there and `predict FILM ""` scored every image below it. It is refused, before any work."""
    from tests.conftest import write_xray

    write_xray(tmp_path / "mine.png", 0, 1)  # an image in the current folder, which predict "" scored
    monkeypatch.chdir(tmp_path)
    film = sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    with pytest.raises(SystemExit) as stop:
        main([a.format(data=tiny_data, film=film) for a in argv])
    assert stop.value.code == 2
    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == f"pneumoscan {argv[0]}: error: {said}; give it a value" and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.png"]


def test_an_unknown_option_given_an_empty_value_is_named(tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `audit DATA --bogus "$X"`, X unset: since c4f9f9f it said 'an argument is empty ... give it a value', not naming
    # --bogus, which stays unknown with any value
    with pytest.raises(SystemExit) as stop:
        main(["audit", str(tiny_data), "--bogus", ""])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "pneumoscan audit: error: unrecognized arguments: --bogus ''"


def test_an_empty_host_is_every_address_not_an_unset_variable() -> None:
    """`serve --host ''` listens on every address, IPv4 and IPv6, as its --help says: the refusal of empty arguments
    (an unset shell variable) took it for a mistake."""
    from pneumoscan.parser import build_parser, parse_args

    assert parse_args(build_parser(), ["serve", "--host", ""]).host == ""
