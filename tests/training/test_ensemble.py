from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumoscan.artifact import load_artifact, read_meta
from pneumoscan.errors import InputError
from pneumoscan.explain.gradcam import gradcam_for_image
from pneumoscan.inference.batch import predict_probs
from pneumoscan.training.config import TrainConfig
from pneumoscan.training.ensemble import build_ensemble
from pneumoscan.training.trainer import train
from tests.conftest import disk_full, full_safetensors, without_stored_patients, write_name_across_splits


@pytest.fixture(scope="module")
def second_run(tiny_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cnn at 24 px on tiny_run's data and validation split, with another initialisation seed."""
    out = tmp_path_factory.mktemp("second") / "run"
    train(TrainConfig(data=str(tiny_data), out=str(out), model="cnn", image_size=24, epochs=2, batch_size=16,
                      val_fraction=0.2, seed=5, cache_dir=str(tiny_run.parent / "cache")), progress=False)
    return out


def test_ensemble_out_in_the_members_training_data_is_refused(tiny_run: Path, second_run: Path,
                                                              tiny_data: Path) -> None:
    """train, pretrain and set-threshold refuse an --out among the data's films; ensemble wrote its folder into the
    members' training data (DATA/test/PNEUMONIA/ens), where its report's figures were later taken for films."""
    out = tiny_data / "test" / "PNEUMONIA" / "ens"
    with pytest.raises(InputError, match=r"ens: is inside the data folder .*data, where what is written would sit "
                                         r"among its labelled films; give --out a folder outside it"):
        build_ensemble([tiny_run, second_run], out, progress=False)
    assert not out.exists()


def test_ensemble_artifact_averages_members_and_chooses_its_threshold(tiny_run: Path, second_run: Path,
                                                                     tmp_path: Path) -> None:
    path = build_ensemble([tiny_run, second_run], tmp_path / "ens", progress=False)
    model, meta = load_artifact(path)
    assert meta.model_name == "ensemble" and meta.image_size == 32
    members = [load_artifact(r) for r in (tiny_run, second_run)]
    rows = (tmp_path / "ens" / "val_predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == len(meta.val_scores["labels"]) == len(members[0][1].val_scores["labels"])
    # the ensemble's validation scores are its own, and its threshold reaches the target recall on them
    labels, probs = np.array(meta.val_scores["labels"]), np.array(meta.val_scores["probs"])
    assert (probs[labels == 1] >= meta.threshold).mean() >= meta.target_recall
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    probs_now = predict_probs(model, images, meta.preprocessing)
    assert probs_now.shape == (4,) and np.isfinite(probs_now).all()
    cam = gradcam_for_image(model, meta, images[0], target=1)
    assert cam.shape == (32, 32) and np.isfinite(cam).all()
    assert meta.training["train_seconds"] == pytest.approx(sum(m.training["train_seconds"] for _, m in members), abs=0.2)
    assert json.loads((tmp_path / "ens" / "config.json").read_text())["ensemble_of"] == [str(tiny_run), str(second_run)]


def test_ensemble_refuses_members_with_other_validation_images(tiny_run: Path, second_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(second_run, other)
    csv = other / "val_predictions.csv"
    csv.write_text("\n".join(csv.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(InputError, match="other images"):
        build_ensemble([tiny_run, other], tmp_path / "ens", progress=False)
    with pytest.raises(InputError, match="at least two"):
        build_ensemble([tiny_run], tmp_path / "ens", progress=False)


def test_training_an_ensemble_directly_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pneumoscan ensemble"):
        train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "o"), model="ensemble"), progress=False)


def test_read_meta_of_ensemble_lists_members(tiny_run: Path, second_run: Path, tmp_path: Path) -> None:
    meta = read_meta(build_ensemble([tiny_run, second_run], tmp_path / "ens", progress=False))
    assert [m["model"] for m in meta.model_config["members"]] == ["resnet10", "cnn"]
    assert [m["model"] for m in meta.training["members"]] == ["resnet10", "cnn"]


@pytest.mark.parametrize(("where", "problem"), [
    ("member", "ensemble member 2: invert: a setting this pneumoscan does not know, which its predictions would leave "
               "out"),
    ("member config", "model 'cnn' has no option 'invert'; its options are: "),
])
def test_an_ensemble_member_with_a_setting_this_version_does_not_know_is_a_newer_pneumoscans(
        tiny_run: Path, second_run: Path, tmp_path: Path, where: str, problem: str) -> None:
    """A setting in a member's entry (model_config["members"][i]) was dropped without a word, so the member was fed
    as this version feeds it; an option of a member's model was refused as 'written by pneumoscan 0.1.0, this is
    0.1.0; load it with the version that wrote it'."""
    from safetensors.torch import load_file, save_file

    from pneumoscan import __version__

    path = build_ensemble([tiny_run, second_run], tmp_path / "ens", progress=False)
    header = json.loads(read_meta(path).to_json())
    member = header["model_config"]["members"][1]
    (member if where == "member" else member["config"])["invert"] = True
    save_file(load_file(str(path)), str(path), metadata={"pneumoscan": json.dumps(header)})
    with pytest.raises(InputError) as err:
        load_artifact(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {problem}")
    assert message.endswith(f": written by a newer pneumoscan than {__version__}; upgrade pneumoscan, or load it "
                            f"with the version that wrote it")


def test_report_of_an_ensemble_lists_members_and_explains_them(tiny_run: Path, second_run: Path, tmp_path: Path) -> None:
    from pneumoscan.report.build import build_report

    build_ensemble([tiny_run, second_run], tmp_path / "ens", progress=False)
    html = build_report(tmp_path / "ens", n_boot=20).read_text()
    assert "This model is an ensemble" in html and str(second_run) in html
    assert "Grad-CAM" in html


def test_ensemble_exports_to_one_onnx_graph_that_matches_torch(tiny_run: Path, second_run: Path, sample_films: Path,
                                                                tmp_path: Path) -> None:
    from pneumoscan.export.onnx import export_artifact

    path = build_ensemble([tiny_run, second_run], tmp_path / "ens", progress=False)
    report = export_artifact(path, tmp_path / "ens.onnx", images=[sample_films])
    assert report.max_abs_diff <= 1e-4 and report.n_images == len(list(sample_films.rglob("*.jpeg")))


def test_ensemble_command(tiny_run: Path, second_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.cli import main

    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(tmp_path / "ens"), "--quiet"]) == 0
    assert "validation: AUC" in capsys.readouterr().out
    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(tmp_path / "ens"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err


def test_a_full_disk_names_the_ensemble_file_and_offers_no_resume(tiny_run: Path, second_run: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`ensemble` has no --resume, which its full-disk message used to offer (it was training's message)."""
    import safetensors.torch

    from pneumoscan.cli import main

    monkeypatch.setattr(safetensors.torch, "save_file", full_safetensors)
    out = tmp_path / "ens"
    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"pneumoscan: error: {out / 'model.safetensors'}: cannot be written (No space left on device); " \
                  f"free disk space\n"
    assert not out.exists()  # nor split.json, config.json or val_predictions.csv written before it
    deeper = tmp_path / "new" / "ens"
    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(deeper), "--quiet"]) == 2
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(kept), "--quiet"]) == 2
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]  # what was there before stays, the rest goes


@pytest.mark.parametrize("name", ["split.json", "config.json"])
def test_a_full_disk_at_the_ensemble_records_names_the_file_and_leaves_no_torn_one(
        name: str, tiny_run: Path, second_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """config.json and split.json were written in place: a full disk left half a file and ended in a traceback."""
    from pneumoscan.cli import main

    write_text, copyfile = Path.write_text, shutil.copyfile

    def half(path: Path, text: str) -> None:  # as a full disk does: part of the file, then the error
        with open(path, "w") as handle:
            handle.write(text[: len(text) // 2])
        raise disk_full()

    def full_text(self: Path, text: str, *args: object, **kwargs: object) -> int:
        return half(self, text) if name in self.name else write_text(self, text, *args, **kwargs)

    def full_copy(src: Path, dst: Path, *args: object, **kwargs: object) -> object:
        return half(Path(dst), Path(src).read_text()) if name in Path(dst).name else copyfile(src, dst, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_text)
    monkeypatch.setattr(shutil, "copyfile", full_copy)
    out = tmp_path / "ens"
    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"pneumoscan: error: {out / name}: cannot be written (No space left on "
                                       f"device); free disk space\n")
    assert not out.exists()  # the folder it made, and split.json written before config.json, are gone
    monkeypatch.undo()
    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(out), "--quiet"]) == 0  # once freed


def test_ensemble_refuses_to_write_over_an_interrupted_training_run(tiny_run: Path, second_run: Path,
                                                                   tmp_path: Path) -> None:
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    for name in ("config.json", "split.json", "last.pt", "history.csv"):  # a run killed before its model was written
        shutil.copy(tiny_run / name, interrupted / name)
    before = {p.name: p.read_bytes() for p in interrupted.iterdir()}
    with pytest.raises(InputError, match="holds a `pneumoscan train` run"):
        build_ensemble([tiny_run, second_run], interrupted, progress=False)
    assert {p.name: p.read_bytes() for p in interrupted.iterdir()} == before
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file; give --out a folder"):
        build_ensemble([tiny_run, second_run], tmp_path / "file", progress=False)


def test_ensemble_refuses_a_member_with_the_same_weights_as_another(tiny_run: Path, second_run: Path,
                                                                   tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)  # or the same recipe trained again with the same --seed: the same weights on CPU
    with pytest.raises(InputError, match="copy: has the same weights as"):
        build_ensemble([tiny_run, second_run, copy], tmp_path / "ens", progress=False)
    assert not (tmp_path / "ens").exists()


def test_members_split_with_another_val_fraction_are_refused_naming_it(tiny_run: Path, tiny_data: Path,
                                                                       tmp_path: Path) -> None:
    other = tmp_path / "other"  # e.g. `make demo`'s run (--val-fraction 0.2) with a run of the README's defaults (0.15)
    train(TrainConfig(data=str(tiny_data), out=str(other), model="cnn", image_size=24, epochs=1, batch_size=16,
                      val_fraction=0.3, seed=5, cache_dir=str(tiny_run.parent / "cache")), progress=False)
    expected = r"run: validated on other images than .*other \(--val-fraction 0.2 vs 0.3\); .*--val-fraction"
    with pytest.raises(InputError, match=expected):
        build_ensemble([other, tiny_run], tmp_path / "ens", progress=False)


def test_members_trained_on_two_copies_of_one_data_set_share_their_split_as_compare_says(
        tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """A member trained on a copy of tiny_run's data folder: `compare` said 'scored on the same validation films'
    (by their bytes), `ensemble` 'validated on other images' (by their absolute paths). Both say the same now."""
    import html

    from pneumoscan.cli import main

    copy, other = tmp_path / "copy", tmp_path / "other"
    shutil.copytree(tiny_data / "train", copy / "train")
    train(TrainConfig(data=str(copy), out=str(other), model="cnn", image_size=24, epochs=1, batch_size=16,
                      val_fraction=0.2, seed=7), progress=False)
    assert main(["compare", str(tiny_run), str(other), "--out", str(tmp_path / "c.html"), "--n-boot", "5"]) == 0
    assert "All runs were scored on the same" in html.unescape((tmp_path / "c.html").read_text("utf-8"))
    assert build_ensemble([tiny_run, other], tmp_path / "ens", progress=False).is_file()
    predictions = other / "val_predictions.csv"
    rows = predictions.read_text().splitlines()
    path, label, rest = rows[1].split(",", 2)
    predictions.write_text("\n".join([rows[0], f"{path},{1 - int(label)},{rest}", *rows[2:]]) + "\n")
    with pytest.raises(InputError, match="other: validated on other images than"):  # a relabelled copy
        build_ensemble([tiny_run, other], tmp_path / "relabelled", progress=False)
    assert main(["compare", str(tiny_run), str(other), "--out", str(tmp_path / "r.html"), "--n-boot", "5"]) == 0
    assert "The runs were validated on different films" in html.unescape((tmp_path / "r.html").read_text("utf-8"))
    predictions.write_text("\n".join(rows) + "\n")
    gone = Path(rows[-1].split(",")[0])
    film = gone.read_bytes()
    gone.unlink()  # matched by name inside each run's data, a deleted film (or another under its name) passed;
    # then 'validated on other images than run', though both were trained on the same data (compare: the same films)
    with pytest.raises(InputError) as err:
        build_ensemble([tiny_run, other], tmp_path / "deleted", progress=False)
    assert str(err.value) == (f"{gone}: a validation film of {other} cannot be read; the members' validation films "
                              f"are matched by their content, so it must be readable: put it back")
    assert not (tmp_path / "deleted").exists()
    gone.write_bytes(film)
    validated = rows[1].split(",")[0]
    with open(validated, "ab") as film:  # no longer the same film
        film.write(b"\0")
    with pytest.raises(InputError, match="other: validated on other images than"):
        build_ensemble([tiny_run, other], tmp_path / "ens2", progress=False)


def test_runs_split_by_name_and_by_auto_on_kermany_names_share_their_split(tiny_run: Path, tiny_data: Path,
                                                                           tmp_path: Path) -> None:
    """`auto` reads Kermany's patients from the file names, as `name` (and every run before --patient-key) does: the
    same validation images, so such runs make an ensemble."""
    by_name = tmp_path / "by_name"
    train(TrainConfig(data=str(tiny_data), out=str(by_name), model="cnn", image_size=24, epochs=1, batch_size=16,
                      val_fraction=0.2, seed=7, patient_key="name", cache_dir=str(tiny_run.parent / "cache")),
          progress=False)
    assert json.loads((tiny_run / "split.json").read_text())["patient_key"] == "auto"
    assert build_ensemble([tiny_run, by_name], tmp_path / "ens", progress=False).is_file()


def test_members_whose_splits_read_patients_otherwise_are_refused_naming_the_key(tmp_path: Path) -> None:
    from tests.conftest import write_dicom_dataset

    data = write_dicom_dataset(tmp_path / "data", size=16)
    runs = []
    for key in ("auto", "name"):
        runs.append(tmp_path / key)
        train(TrainConfig(data=str(data), out=str(runs[-1]), model="cnn", image_size=16, epochs=1, batch_size=16,
                          val_fraction=0.25, patient_key=key, seed=len(runs)), progress=False)
    expected = r"auto: validated on other images than .*name \(--patient-key auto vs name\); .*--patient-key so"
    with pytest.raises(InputError, match=expected):
        build_ensemble([runs[1], runs[0]], tmp_path / "ens", progress=False)


def test_a_guardless_ensembles_messages_name_the_data_its_members_trained_on(tiny_run: Path, second_run: Path,
                                                                           tiny_data: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str],
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """An ensemble records its data in its members only: set-threshold's and serve's `fit-guard` hint said
    `--data TRAINING_DATA` for it."""
    import logging

    from pneumoscan.cli import main
    from pneumoscan.service.app import create_app
    from pneumoscan.service.settings import Settings

    ensemble = build_ensemble([tiny_run, second_run], tmp_path / "ens", progress=False)
    assert read_meta(ensemble).placed_data().shown == str(tiny_data)
    site = tmp_path / "site" / "model.safetensors"
    assert main(["set-threshold", "--model", str(ensemble), "--data", str(tiny_data), "--split", "test", "--out",
                 str(site), "--n-boot", "20", "--backend", "torch"]) == 0
    assert f"`pneumoscan fit-guard --model {site} --data {tiny_data}`" in capsys.readouterr().err
    with caplog.at_level(logging.INFO, logger="pneumoscan.service"):
        create_app(Settings(model=str(ensemble), backend="torch"))
    assert f"pneumoscan fit-guard --model {ensemble} --data {tiny_data}`" in caplog.text


def test_an_ensemble_counts_patients_in_its_members_data_placed_from_their_run_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Members trained in lab/ with `--data data` that record no absolute path (as runs did before `data_resolved`):
    the ensemble, built from another folder, places it from each member's run folder as a single run's is placed,
    so from a third folder its patients shared with the training data are counted. Before, an ensemble never
    counted them ('the model records no training data, as an ensemble does') and its fit-guard hint said
    `--data TRAINING_DATA`."""
    from pneumoscan.data.layout import discover
    from pneumoscan.data.patients import patients_in_training, uncounted_reason
    from tests.conftest import write_xray

    lab, elsewhere, third = tmp_path / "lab", tmp_path / "elsewhere", tmp_path / "third"
    for p in range(8):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            for k in range(2):
                write_xray(lab / "data" / "train" / name / f"{name[0]}{p}" / f"{k}.png", label, 40 * p + 2 * label + k)
    for p in range(2):  # new films of two training patients, and of a new one
        write_xray(tmp_path / "site" / "NORMAL" / f"N{p}" / "new.png", 0, 900 + p)
    write_xray(tmp_path / "site" / "PNEUMONIA" / "P99" / "new.png", 1, 999)
    monkeypatch.setattr(TrainConfig, "record", TrainConfig.to_dict)  # no data_resolved, as an older run
    monkeypatch.chdir(lab)
    for seed, out in enumerate(("runs/a", "runs/b")):
        train(TrainConfig(data="data", out=out, model="cnn", image_size=16, epochs=1, batch_size=16, val_fraction=0.25,
                          patient_key="folder", seed=seed, cache_dir=str(tmp_path / "cache")), progress=False)
    for folder in (elsewhere, third):
        folder.mkdir()
    monkeypatch.chdir(elsewhere)
    ensemble = build_ensemble(["../lab/runs/a", "../lab/runs/b"], "ens", progress=False).resolve()
    monkeypatch.chdir(third)
    meta = read_meta(ensemble)
    site = discover(tmp_path / "site")["all"]
    shared = patients_in_training(site, meta.training, progress=False, run_dir=ensemble.parent).shared
    assert shared == {"patients": 2, "films": 2, "by": ["folder"], "compared": 3}
    assert uncounted_reason(shared, meta.training, ensemble.parent) is None
    assert meta.fit_guard_command("m", ensemble.parent) == f"`pneumoscan fit-guard --model m --data {lab / 'data'}`"


def test_an_ensemble_moved_with_its_runs_and_data_finds_the_data_from_its_members_run_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lab/ (data, runs, ensemble) moved to lab2/: the members record only lab/'s absolute data_resolved, so the
    ensemble found no training data, where a single run still places its relative --data from its run folder."""
    from tests.conftest import write_xray

    lab = tmp_path / "lab"
    for p in range(4):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            write_xray(lab / "data" / "train" / name / f"{name[0]}{p}.png", label, 10 * p + label)
    monkeypatch.chdir(lab)
    for seed, out in enumerate(("runs/a", "runs/b")):
        train(TrainConfig(data="data", out=out, model="cnn", image_size=16, epochs=1, batch_size=8, val_fraction=0.25,
                          seed=seed, cache_dir=str(tmp_path / "cache")), progress=False)
    build_ensemble(["runs/a", "runs/b"], "runs/ens", progress=False)
    monkeypatch.chdir(tmp_path)
    lab.rename(tmp_path / "lab2")
    monkeypatch.chdir(tmp_path / "lab2")
    meta = read_meta(Path("runs/ens/model.safetensors"))
    assert meta.training["members"][0]["config"]["data_resolved"] == str(lab / "data")  # gone
    found = meta.placed_data(Path("runs/ens")).folder
    assert found is not None and found.resolve() == (tmp_path / "lab2" / "data").resolve()
    assert read_meta(Path("runs/a/model.safetensors")).placed_data(Path("runs/a")).folder is not None  # as a run does


def test_an_ensemble_whose_first_members_run_folder_is_gone_places_its_data_from_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`data_record` gave up at the first member with settings, its run folder gone: the data was 'not found' though
    the second member's run folder still placed it."""
    from pneumoscan.training.config import data_record

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "b").mkdir(parents=True)
    (tmp_path / "runs" / "b" / "config.json").write_text(json.dumps({"data": "data"}))
    members = [{"run": "runs/a", "config": {"data": "data", "seed": 0}},  # removed since
               {"run": "runs/b", "config": {"data": "data", "seed": 1}}]
    assert data_record({"members": members}) == (members[1]["config"], Path("runs/b"))
    assert data_record({"members": members[:1]}) == (members[0]["config"], None)  # none left: the first, unplaced
    assert data_record({"members": [{"run": "runs/b"}, *members]}) == (members[1]["config"], Path("runs/b"))


def test_an_older_ensemble_whose_members_data_cannot_be_placed_says_to_build_it_again() -> None:
    from pneumoscan.data.patients import uncounted_reason

    training = {"members": [{"run": "runs/a", "config": {"data": "data", "patient_key": "folder"}}]}
    assert uncounted_reason(None, training) == (
        "the ensemble's members record their training data as data, a path relative to the folder training was "
        "started in, which cannot be told here; build the ensemble again with `pneumoscan ensemble`, which records "
        "where it is")


def test_an_unreadable_validation_film_of_members_trained_on_one_data_folder_is_named_once(
        tiny_run: Path, second_run: Path, tmp_path: Path) -> None:
    """Two runs trained on one folder with one film missing said '... of run cannot be read (and 1 other); the
    members' validation films are matched by their content': the one film counted once per member, the reason one
    about copies of the data elsewhere. It is one film, every member's, to put back."""
    rows = (tiny_run / "val_predictions.csv").read_text().splitlines()[1:]
    gone = [Path(row.split(",")[0]) for row in rows[:2]]
    films = [path.read_bytes() for path in gone]
    try:
        gone[0].unlink()
        with pytest.raises(InputError) as err:
            build_ensemble([tiny_run, second_run], tmp_path / "one", progress=False)
        assert str(err.value) == f"{gone[0]}: cannot be read (a validation film of every member); put it back"
        gone[1].unlink()
        with pytest.raises(InputError) as err:
            build_ensemble([tiny_run, second_run], tmp_path / "two", progress=False)
        assert str(err.value) == (f"{gone[0]}: cannot be read (a validation film of every member; 1 other cannot be "
                                  f"read either); put it back")
    finally:
        for path, film in zip(gone, films):
            path.write_bytes(film)


def test_an_ensembles_intervals_are_drawn_by_patient_as_its_members_are(tiny_run: Path, second_run: Path,
                                                                        tmp_path: Path) -> None:
    """build_ensemble stored no patients with its validation scores, so its val_metrics and the intervals predict and
    serve draw from them resampled film by film, too narrow where a patient has several films."""
    from pneumoscan.evaluation.bootstrap import summarize

    member = read_meta(tiny_run / "model.safetensors")
    meta = read_meta(build_ensemble([tiny_run, second_run], tmp_path / "ens", progress=False))
    assert member.score_groups() is not None
    assert meta.score_groups() == member.score_groups()  # the same films, in the same order, of the same patients
    labels, probs = meta.val_scores["labels"], meta.val_scores["probs"]
    assert meta.val_metrics == summarize(labels, probs, meta.threshold, n_boot=500, seed=0, groups=meta.score_groups())


def test_an_ensembles_val_metrics_are_drawn_with_its_seed(tiny_run: Path, second_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """build_ensemble drew its val_metrics with seed 0 whatever was asked, where train draws a run's with its --seed:
    `pneumoscan ensemble --seed` sets it, recorded in their `intervals`."""
    from pneumoscan.cli import main
    from pneumoscan.evaluation.bootstrap import summarize

    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(tmp_path / "ens"), "--seed", "7",
                 "--quiet"]) == 0
    meta = read_meta(tmp_path / "ens" / "model.safetensors")
    labels, probs = meta.val_scores["labels"], meta.val_scores["probs"]
    assert meta.val_metrics["intervals"]["seed"] == 7
    # recorded with its other settings, so that the ensemble can be built again as it was (it was nowhere else)
    assert meta.training["seed"] == 7
    assert json.loads((tmp_path / "ens" / "config.json").read_text())["ensemble_seed"] == 7
    assert meta.val_metrics == summarize(labels, probs, meta.threshold, n_boot=500, seed=7, groups=meta.score_groups())
    with pytest.raises(InputError, match=r"--seed -1: must be 0 or more"):
        build_ensemble([tiny_run, second_run], tmp_path / "bad", seed=-1, progress=False)


def test_an_ensemble_takes_any_seed_evaluate_takes(tiny_run: Path, second_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The seed draws only the bootstrap (np.random.default_rng, which takes any seed >= 0), as evaluate's,
    set-threshold's and compare's do; `ensemble --seed` stopped at 2**32 - 1, the bound of train's seeds."""
    from pneumoscan.cli import main

    seed = 2**32
    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(tmp_path / "cli"), "--seed", str(seed),
                 "--quiet"]) == 0
    assert read_meta(tmp_path / "cli" / "model.safetensors").val_metrics["intervals"]["seed"] == seed
    path = build_ensemble([tiny_run, second_run], tmp_path / "api", seed=2**40, progress=False)
    assert read_meta(path).val_metrics["intervals"]["seed"] == 2**40
    assert main(["ensemble", str(tiny_run), str(second_run), "--out", str(tmp_path / "bad"), "--seed", "-1"]) == 2
    assert capsys.readouterr().err.strip().endswith("--seed -1: must be 0 or more")
    assert not (tmp_path / "bad").exists()


def test_an_ensemble_of_members_storing_no_patients_reads_them_from_the_files(tiny_run: Path, second_run: Path,
                                                                              tmp_path: Path) -> None:
    """A first member from before validation scores stored their patients: the ensemble reads them from its
    val_predictions.csv's files as `evaluate` does (Kermany names here) and stores them, not none."""
    from pneumoscan.artifact import stored_scores
    from pneumoscan.evaluation.bootstrap import summarize
    from pneumoscan.evaluation.evaluate import film_patients, read_prediction_samples

    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(tiny_run, first)
    shutil.copytree(second_run, second)
    without_stored_patients(first / "model.safetensors")
    without_stored_patients(second / "model.safetensors")
    member = read_meta(first / "model.safetensors")
    assert member.score_groups() is None
    meta = read_meta(build_ensemble([first, second], tmp_path / "ens", progress=False))
    val, _ = read_prediction_samples(first / "val_predictions.csv")
    patients = film_patients(val, member.training, progress=False)
    assert patients is not None and None not in patients
    assert meta.val_scores["groups"] == stored_scores(meta.val_scores["labels"], [], patients)["groups"]
    labels, probs = meta.val_scores["labels"], meta.val_scores["probs"]
    assert meta.val_metrics == summarize(labels, probs, meta.threshold, n_boot=500, seed=0, groups=patients)


def test_an_ensemble_reading_patients_from_the_files_keys_them_over_every_split(tmp_path: Path) -> None:
    """Members storing no patients: the ensemble read its validation films' patients keyed alone, where `train` keys
    them over every split (a name keying films of another split joins nothing: val's person7_bacteria_3.jpeg stays
    person7 beside MRN7's DICOM film), so it drew 2 patients where its members' training drew 3."""
    data = write_name_across_splits(tmp_path / "data")
    runs = [tmp_path / "first", tmp_path / "second"]
    for seed, run in enumerate(runs):
        train(TrainConfig(data=str(data), out=str(run), model="mlp", image_size=32, epochs=1, use_given_val=True,
                          seed=seed, cache_dir=str(tmp_path / "cache")), progress=False)
    trained = read_meta(runs[0] / "model.safetensors").score_groups()
    for run in runs:
        without_stored_patients(run / "model.safetensors")
    meta = read_meta(build_ensemble(runs, tmp_path / "ens", progress=False))
    assert len(set(meta.score_groups() or [])) == len(set(trained or [])) == 3
