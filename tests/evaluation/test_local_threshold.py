"""`set-threshold`: a site re-chooses the operating threshold on its own labelled images."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from pneumoscan.artifact import default_model_path, read_meta
from pneumoscan.cli import main
from pneumoscan.data.layout import evaluation_samples
from pneumoscan.errors import InputError
from pneumoscan.evaluation.local_threshold import few_images_warning, out_artifact_path, set_threshold
from pneumoscan.evaluation.metrics import recall
from pneumoscan.inference.ood import load_guard
from pneumoscan.inference.predictor import Predictor
from pneumoscan.service.app import create_app
from pneumoscan.service.settings import Settings
from tests.conftest import files_opened_under, full_safetensors, write_dicom_test_split, write_xray


@pytest.fixture(scope="module")
def local(tiny_run: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("local") / "site"
    return set_threshold(tiny_run, tiny_data, out, split="test", target_recall=0.9, backend="torch", n_boot=200)


def _scores(model: Path, data: Path) -> tuple[np.ndarray, np.ndarray]:
    from pneumoscan.data.cache import load_image_set

    predictor = Predictor(model)
    images = load_image_set(evaluation_samples(data, "test")[1], predictor.size, None, progress=False)
    return images.labels, predictor.predict_images(np.asarray(images.images))


def test_threshold_is_the_highest_reaching_the_target_on_the_local_images(local, tiny_run: Path, tiny_data: Path) -> None:
    labels, probs = _scores(tiny_run, tiny_data)
    meta = read_meta(local.out)
    assert local.out == out_artifact_path(local.out.parent) and meta.threshold == local.threshold
    assert recall(labels, (probs >= meta.threshold).astype(int)) >= 0.9
    higher = np.sort(probs[(labels == 1) & (probs > meta.threshold)])
    chosen = higher[0]  # the threshold sits midway below this film's score, with no film in between
    assert not ((probs >= meta.threshold) & (probs < chosen)).any()
    if higher.size > 1:  # the next positive score up would miss the target
        assert recall(labels, (probs >= higher[1]).astype(int)) < 0.9
    assert meta.target_recall == 0.9 and meta.val_scores["probs"] == pytest.approx(probs.tolist(), abs=1e-6)
    lo, hi = local.interval
    assert lo <= meta.threshold <= hi


def test_the_copy_keeps_weights_and_records_where_its_threshold_came_from(local, tiny_run: Path, tiny_data: Path) -> None:
    source, copy = load_file(str(tiny_run / "model.safetensors")), load_file(str(local.out))
    assert source.keys() == copy.keys() and all(np.array_equal(source[k], copy[k]) for k in source)
    old, new = read_meta(tiny_run / "model.safetensors"), read_meta(local.out)
    assert old.threshold_source == {} and local.before["threshold"] == old.threshold
    assert new.threshold_source["data"] == str(tiny_data) and new.threshold_source["split"] == "test"
    assert new.threshold_source["n_normal"] + new.threshold_source["n_pneumonia"] == local.after["n"] == 16
    assert new.threshold_source["previous_threshold"] == old.threshold
    assert new.threshold_source["metrics"]["recall"]["value"] == local.after["recall"]["value"]
    assert new.val_metrics == old.val_metrics  # the training validation figures, each at its own threshold
    assert new.threshold_source["patients_in_training"] == {"patients": 0, "films": 0, "by": [],
                                                                "compared": 0}  # Kermany names: none compared


def test_a_threshold_chosen_on_films_of_training_patients_is_warned_about_and_recorded(
        shared_patient_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """set-threshold refused the training films but chose, without a word, on new films of the training patients,
    which the model scores better than new patients': evaluate counted them, set-threshold did not."""
    data = shared_patient_run.parent / "data"
    out = tmp_path / "site"
    assert main(["set-threshold", "--model", str(shared_patient_run), "--data", str(data), "--split", "test",
                 "--out", str(out), "--n-boot", "5"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "patients of the" in line]
    assert lines == [f"pneumoscan: warning: 2 patients of the test split (2 of its 4 films) also have films in the "
                     f"data this model was trained on, by DICOM PatientID: the same patients on both sides, so the "
                     f"figures on them are not those of new patients; `pneumoscan audit {data}` lists them"]
    assert read_meta(out / "model.safetensors").threshold_source["patients_in_training"] == {
        "patients": 2, "films": 2, "by": ["DICOM PatientID"], "compared": 4}


def test_the_data_folder_is_scanned_once(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Once for both the check that the films are new to the model and their scoring (and the data the model was
    trained on once, for its patients)."""
    from pneumoscan.data import layout

    site = tmp_path / "films"
    shutil.copytree(tiny_data / "test", site)
    scanned, discover = [], layout.discover
    monkeypatch.setattr(layout, "discover", lambda root, *a, **kw: scanned.append(root) or discover(root, *a, **kw))
    set_threshold(tiny_run, site, tmp_path / "site", backend="torch", n_boot=20)
    assert sorted(map(str, scanned)) == sorted([str(site), str(tiny_data)])


def test_predict_and_target_recall_use_the_local_operating_point(local) -> None:
    assert Predictor(local.out).threshold == local.threshold
    # --target-recall now chooses on the stored local scores
    assert Predictor(local.out, target_recall=0.9).threshold == local.threshold


def test_guard_travels_with_the_copy(fitted: Path, tiny_data: Path, tmp_path: Path) -> None:
    result = set_threshold(fitted, tiny_data, tmp_path / "guarded.safetensors", split="test", backend="torch", n_boot=20)
    assert result.guard_copied and result.out == tmp_path / "guarded.safetensors"
    assert load_guard(result.out) is not None  # re-keyed to the new file, not stale
    assert Predictor(result.out).guard is not None


def test_a_lateral_dicom_among_the_films_is_named_as_the_guard_refuses_it(fitted: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The threshold was chosen on a lateral DICOM's score with no word of it (the image cache kept no View
    Position); it is named on stderr and under refused_by_guard, as evaluate names the guard's other refusals."""
    import json

    from tests.conftest import LATERAL, site_with_dicoms

    data = site_with_dicoms(tmp_path / "site")
    out, record = tmp_path / "out", tmp_path / "threshold.json"
    assert main(["set-threshold", "--model", str(fitted), "--data", str(data), "--out", str(out), "--n-boot", "20",
                 "--backend", "torch", "--json", str(record)]) == 0
    lateral = f"{data / 'NORMAL' / 'lateral.dcm'}: {LATERAL}"
    assert lateral in capsys.readouterr().err
    before = json.loads(record.read_text())["before"]
    assert [r for r in before["refused_by_guard"] if ".dcm" in r] == [lateral] and before["n"] == 6


def test_without_a_guard_none_is_written(local) -> None:
    assert not local.guard_copied and not (local.out.parent / "model.ood.safetensors").exists()


@pytest.mark.parametrize("guarded", [False, True])
def test_a_copy_without_a_guard_is_said_with_the_fit_guard_command(guarded: bool, tiny_run: Path, fitted: Path,
                                                                   tiny_data: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Run before fit-guard (README.md's command list shows it first), set-threshold wrote a model that refuses
    nothing, and said only 'model: OUT', without the '(with its chest X-ray guard)' of a guarded copy."""
    out = tmp_path / "site"
    assert main(["set-threshold", "--model", str(fitted if guarded else tiny_run), "--data", str(tiny_data),
                 "--split", "test", "--out", str(out), "--n-boot", "20", "--backend", "torch"]) == 0
    err = capsys.readouterr().err
    if guarded:
        assert "has no chest X-ray guard" not in err
    else:
        trained_on = read_meta(tiny_run / "model.safetensors").training["config"]["data"]
        assert f"{out / 'model.safetensors'} has no chest X-ray guard" in err
        assert f"`pneumoscan fit-guard --model {out / 'model.safetensors'} --data {trained_on}`" in err


def test_refuses_to_overwrite(tiny_run: Path, tiny_data: Path, local) -> None:
    with pytest.raises(InputError, match="is the model being re-thresholded"):
        set_threshold(tiny_run, tiny_data, tiny_run, split="test")
    with pytest.raises(InputError, match="already exists"):
        set_threshold(tiny_run, tiny_data, local.out, split="test")
    with pytest.raises(InputError, match="shipped with pneumoscan"):
        set_threshold(tiny_run, tiny_data, default_model_path(), split="test")


def test_the_models_own_training_images_are_refused(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="trained this model"):
        set_threshold(tiny_run, tiny_data, tmp_path / "out", split="train")
    assert not (tmp_path / "out").exists()


def test_one_class_data_is_refused_before_writing(tiny_run: Path, tmp_path: Path) -> None:
    for i in range(3):
        write_xray(tmp_path / "data" / "NORMAL" / f"IM-{i:04d}-0001.jpeg", 0, i)
    (tmp_path / "data" / "PNEUMONIA").mkdir()
    (tmp_path / "data" / "PNEUMONIA" / "person1_virus_1.jpeg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="no readable PNEUMONIA images"):
        set_threshold(tiny_run, tmp_path / "data", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_few_images_are_flagged(local) -> None:
    message = few_images_warning(local)
    assert message is not None and "only 8 PNEUMONIA and 8 NORMAL" in message and "12.5%" in message
    many = dict(local.after, n_positive=60, n_negative=50)
    assert few_images_warning(type(local)(**{**local.__dict__, "after": many})) is None


def test_cli(tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site"
    args = ["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test", "--out", str(out),
            "--target-recall", "0.9", "--n-boot", "50", "--backend", "torch"]
    assert main([*args, "--json", str(tmp_path / "t.json")]) == 0
    captured = capsys.readouterr()
    assert "threshold for recall 0.9:" in captured.out and "before   after" in captured.out
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["threshold"] == read_meta(out / "model.safetensors").threshold and record["target_recall"] == 0.9
    assert record["before"]["n"] == record["after"]["n"] == 16 and record["threshold_ci95"][0] <= record["threshold"]
    assert record["guard_copied"] is False and record["onnx"] is None  # the source had no export
    assert "only 8 PNEUMONIA and 8 NORMAL" in captured.err and (out / "model.safetensors").is_file()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main([*args[:-6], "--out", str(tmp_path / "x"), "--target-recall", "1.5"]) == 2
    assert "--target-recall 1.5" in capsys.readouterr().err


def test_a_full_disk_is_one_line_naming_the_file(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """safetensors' own error for a full disk was a traceback."""
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", full_safetensors)
    out = tmp_path / "site"
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test", "--out",
                 str(out), "--n-boot", "50", "--backend", "torch"]) == 2
    assert capsys.readouterr().err.endswith(f"pneumoscan: error: {out / 'model.safetensors'}: cannot be written "
                                            f"(No space left on device); free disk space\n")


def test_a_failed_json_takes_the_new_model_copy_with_it(fitted: Path, tiny_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--json is written after the copy: a full disk there left the model, its guard and their folders behind."""
    from tests.conftest import disk_full

    write_text = Path.write_text

    def full_json(self: Path, text: str, *args: object, **kwargs: object) -> int:
        if ".json" not in self.name:
            return write_text(self, text, *args, **kwargs)
        raise disk_full()

    monkeypatch.setattr(Path, "write_text", full_json)
    out, record = tmp_path / "new" / "site", tmp_path / "t.json"
    assert main(["set-threshold", "--model", str(fitted), "--data", str(tiny_data), "--split", "test", "--out",
                 str(out), "--json", str(record), "--n-boot", "20", "--backend", "torch"]) == 2
    assert capsys.readouterr().err.endswith(f"pneumoscan: error: {record}: cannot be written (No space left on "
                                            f"device); free disk space\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failing", ["model", "guard"])
def test_a_failed_write_leaves_nothing_that_was_not_there_before(failing: str, fitted: Path, tiny_data: Path,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk left the --out folders it had made behind, empty, or with the model but not its guard."""
    import safetensors.numpy
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch if failing == "model" else safetensors.numpy, "save_file", full_safetensors)
    out = tmp_path / "new" / "site"
    assert main(["set-threshold", "--model", str(fitted), "--data", str(tiny_data), "--split", "test", "--out",
                 str(out), "--n-boot", "20", "--backend", "torch"]) == 2
    name = "model.safetensors" if failing == "model" else "model.ood.safetensors"
    assert f"{out / name}: cannot" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"  # a folder that was there before stays, as it was
    (kept / "notes.txt").parent.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main(["set-threshold", "--model", str(fitted), "--data", str(tiny_data), "--split", "test", "--out",
                 str(kept / "site.safetensors"), "--n-boot", "20", "--backend", "torch"]) == 2
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


def test_cli_seed_draws_the_bootstrap_as_evaluates_does(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """set-threshold had no --seed: its intervals were always seed 0's. The same seed gives the same figures, another
    seed other intervals (not another threshold), and a negative one is refused before any scoring, as in evaluate."""
    def run(name: str, seed: str) -> dict:
        args = ["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test", "--out",
                str(tmp_path / name), "--target-recall", "0.9", "--n-boot", "50", "--backend", "torch", "--seed", seed,
                "--json", str(tmp_path / f"{name}.json")]
        assert main(args) == 0
        return json.loads((tmp_path / f"{name}.json").read_text())

    first, again, other = run("a", "3"), run("b", "3"), run("c", "4")
    for record in (first, again, other):
        del record["model"]
    assert first == again
    assert other["threshold"] == first["threshold"] and other["after"]["threshold"] == first["after"]["threshold"]
    assert other["threshold_ci95"] != first["threshold_ci95"]
    assert other["after"]["roc_auc"]["ci95"] != first["after"]["roc_auc"]["ci95"]
    capsys.readouterr()
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--out", str(tmp_path / "d"),
                 "--seed", "-1", "--json", str(tmp_path / "new" / "d.json")]) == 2
    assert capsys.readouterr().err.strip() == "pneumoscan: error: --seed -1: must be 0 or more"
    assert not (tmp_path / "d").exists() and not (tmp_path / "new").exists()


def test_evaluate_says_where_the_threshold_came_from_and_warns_on_the_same_films(
        local, tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model", str(local.out), "--data", str(tiny_data), "--split", "test", "--n-boot", "20"]) == 0
    captured = capsys.readouterr()
    assert f"chosen by set-threshold on {tiny_data} (test, 16 images" in captured.out
    assert "in-sample" in captured.err
    assert main(["evaluate", "--model", str(local.out), "--data", str(tiny_data), "--split", "train", "--n-boot", "20"]) == 0
    captured = capsys.readouterr()
    assert "chosen by set-threshold" in captured.out and "the threshold was chosen on" not in captured.err
    assert "60 of 60 images are films this model was trained or validated on" in captured.err
    assert main(["evaluate", "--model", str(local.out), "--data", str(tiny_data), "--split", "test", "--n-boot", "20",
                 "--threshold", "0.5"]) == 0
    assert "set-threshold" not in capsys.readouterr().out  # not the stored threshold: nothing to say about it


def test_service_says_where_the_threshold_came_from(local, tiny_data: Path) -> None:
    with TestClient(create_app(Settings(model=str(local.out), backend="torch"))) as client:
        info = client.get("/model").json()
    assert info["threshold"] == pytest.approx(local.threshold)
    assert info["threshold_source"]["n_normal"] == 8 and "metrics" not in info["threshold_source"]
    assert str(tiny_data.parent) not in json.dumps(info)  # no server path: the data folder by its name only
    assert info["threshold_source"]["data"] == tiny_data.name and "data_resolved" not in info["threshold_source"]



@pytest.mark.parametrize("command", ["evaluate", "set-threshold"])
def test_an_unreadable_film_is_a_warning_on_stderr(command: str, tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Like every other warning: `pneumoscan: warning: skipped FILE: why` on stderr, nothing of it on stdout."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data / "test", data / "test")
    (data / "test" / "NORMAL" / "IM-0999-0001.jpeg").write_bytes(b"not a jpeg")
    args = [command, "--model", str(tiny_run), "--data", str(data), "--split", "test", "--n-boot", "20",
            "--backend", "torch", "--target-recall", "0.9"]
    assert main([*args, "--out", str(tmp_path / "site")] if command == "set-threshold" else args) == 0
    captured = capsys.readouterr()
    assert "pneumoscan: warning: skipped " in captured.err and "IM-0999-0001.jpeg" in captured.err
    assert "IM-0999-0001.jpeg" not in captured.out


def test_a_sites_model_gets_the_interval_of_its_own_films(local, tiny_run: Path) -> None:
    """Borderline on a site's model means within the interval of the threshold on the site's films (those
    set-threshold chose it on, stored in the model), not on the training validation films."""
    from pneumoscan.evaluation.thresholds import threshold_ci95

    scores = read_meta(local.out).val_scores
    interval = Predictor(local.out).threshold_ci95
    assert interval == pytest.approx(threshold_ci95(scores["labels"], scores["probs"], 0.9))
    assert interval[0] <= local.threshold <= interval[1]
    assert interval != pytest.approx(Predictor(tiny_run).threshold_ci95)


def test_set_threshold_on_a_data_set_of_several_splits_needs_split(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """It chose on test/ by default, the films results are then reported on; now it names the splits and --split,
    before any scoring, and writes nothing. One split (a folder of class folders) is used whole, as before."""
    out = tmp_path / "site"
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"pneumoscan: error: {tiny_data}: holds the splits train, test; name the films "
                                       f"to choose the threshold on: --split with films set aside for it, not those "
                                       f"you report results on\n")
    assert not out.exists()
    shutil.copytree(tiny_data / "test", tmp_path / "data" / "val")
    shutil.copytree(tiny_data / "test", tmp_path / "data" / "test")
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tmp_path / "data"), "--out", str(out)]) == 2
    assert "holds the splits val, test; name the films to choose the threshold on: --split val, the films set aside " \
           "for it\n" in capsys.readouterr().err
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tmp_path / "data" / "val"), "--out", str(out),
                 "--n-boot", "5", "--json", str(tmp_path / "t.json")]) == 0
    assert read_meta(out / "model.safetensors").threshold_source["split"] == "all"


def test_the_copy_of_a_model_with_a_current_onnx_export_gets_its_own(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy's new SHA-256 leaves the source's export behind, so every command imported torch and exported the
    copy in memory (the shipped model's predict: 1.10 s and 111 MB became 6.90 s and 367 MB)."""
    from pneumoscan.evaluation.local_threshold import format_local_threshold
    from pneumoscan.export.onnx import export_artifact
    from pneumoscan.inference.onnx_backend import export_on_file
    from tests.conftest import disk_full

    source = tmp_path / "run"
    shutil.copytree(tiny_run, source)
    export_artifact(source, source / "model.onnx")
    result = set_threshold(source, tiny_data, tmp_path / "site", split="test", n_boot=20)
    assert result.onnx == tmp_path / "site" / "model.onnx"
    assert export_on_file(result.out, read_meta(result.out)) is not None  # current: used as is, without torch
    text = format_local_threshold(result)
    assert f"its ONNX export: {result.onnx}" in text and "pneumoscan export" not in text
    assert main(["set-threshold", "--model", str(source), "--data", str(tiny_data), "--split", "test", "--out",
                 str(tmp_path / "cli"), "--json", str(tmp_path / "c.json"), "--n-boot", "20"]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["onnx"] == str(tmp_path / "cli" / "model.onnx")  # said

    def full_json(self: Path, text: str, *args: object, **kwargs: object) -> int:
        raise disk_full()

    monkeypatch.setattr(Path, "write_text", full_json)  # a --json that cannot be written takes the export along too
    assert main(["set-threshold", "--model", str(source), "--data", str(tiny_data), "--split", "test", "--out",
                 str(tmp_path / "new" / "site"), "--json", str(tmp_path / "t.json"), "--n-boot", "20"]) == 2
    assert not (tmp_path / "new").exists()


def _exported_fitted(fitted: Path, folder: Path) -> Path:
    """A copy of the guarded model with a current ONNX export beside it."""
    from pneumoscan.export.onnx import export_artifact

    folder.mkdir()
    for name in ("model.safetensors", "model.ood.safetensors"):
        shutil.copy(fitted.parent / name, folder / name)
    export_artifact(folder / "model.safetensors", folder / "model.onnx")
    return folder / "model.safetensors"


def test_a_failed_export_keeps_the_whole_copy_and_gives_the_export_command(fitted: Path, tiny_data: Path,
                                                                           tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk during the optional export cancelled the run after the copy was whole: the copy went, and its guard
    was left behind, orphaned."""
    import pneumoscan.export.onnx as onnx_module
    from tests.conftest import disk_full

    source = _exported_fitted(fitted, tmp_path / "run")

    def full(model: Path, out: Path) -> None:
        Path(out).write_bytes(b"half")  # what a write cut short would leave
        raise disk_full()

    monkeypatch.setattr(onnx_module, "export_artifact", full)
    out = tmp_path / "site"
    with pytest.warns(UserWarning) as warned:
        result = set_threshold(source, tiny_data, out, split="test", backend="torch", n_boot=20)
    assert result.onnx is None and result.guard_copied
    assert sorted(p.name for p in out.iterdir()) == ["model.ood.safetensors", "model.safetensors"]
    assert Predictor(result.out).guard is not None
    assert (f"{result.out}: not exported to ONNX (OSError: [Errno 28] No space left on device); pneumoscan export "
            f"--model {result.out} --out {out / 'model.onnx'}") in [str(w.message) for w in warned]


def test_ctrl_c_during_the_export_removes_it_and_keeps_the_copy(fitted: Path, tiny_data: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The function keeps the whole copy; the command, whose Ctrl+C leaves nothing new, removes it too."""
    import pneumoscan.export.onnx as onnx_module

    source = _exported_fitted(fitted, tmp_path / "run")

    def interrupted(model: Path, out: Path) -> None:
        Path(out).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_module, "export_artifact", interrupted)
    out = tmp_path / "site"
    with pytest.raises(KeyboardInterrupt):
        set_threshold(source, tiny_data, out, split="test", backend="torch", n_boot=20)
    assert sorted(p.name for p in out.iterdir()) == ["model.ood.safetensors", "model.safetensors"]
    assert main(["set-threshold", "--model", str(source), "--data", str(tiny_data), "--split", "test", "--out",
                 str(tmp_path / "new" / "site"), "--n-boot", "20"]) == 130
    assert not (tmp_path / "new").exists()


def test_an_existing_onnx_file_at_out_is_refused_before_the_scoring(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                    capsys) -> None:
    """The copy's export replaced it without a word (a user's export of another model)."""
    out = tmp_path / "site"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"my other export")
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test", "--out",
                 str(out), "--n-boot", "20"]) == 2
    assert capsys.readouterr().err == (f"pneumoscan: error: {out / 'model.onnx'}: already exists, where the copy's "
                                       f"ONNX export goes; choose a new --out or delete the file first\n")
    assert (out / "model.onnx").read_bytes() == b"my other export" and not (out / "model.safetensors").exists()


@pytest.mark.parametrize("name", ["site.onnx", "site_model.h5", "site.pt"])
def test_an_out_named_as_another_model_format_is_refused_before_the_scoring(
        name: str, tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--out site.onnx` (the export meant, or a Keras user's site_model.h5) made a folder of that name holding
    model.safetensors."""
    out = tmp_path / name
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test", "--out",
                 str(out), "--n-boot", "20"]) == 2
    assert capsys.readouterr().err == (
        f"pneumoscan: error: {out}: --out names the new model, written as safetensors (its ONNX export, when made, "
        f"goes beside it), not a {out.suffix} file; give a folder or a .safetensors file, e.g. --out "
        f"{out.with_suffix('.safetensors')}\n")
    assert not out.exists()
    assert out_artifact_path(tmp_path / "site.v2") == tmp_path / "site.v2" / "model.safetensors"  # a folder's dot
    assert out_artifact_path(tmp_path / "m.SafeTensors") == tmp_path / "m.SafeTensors"


@pytest.mark.parametrize("out", ["{data}", "{data}/NORMAL/run", "{data}/site.safetensors", "{data}.onnx"])
def test_an_out_in_the_data_folder_is_refused_before_the_scoring(
        out: str, tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--out DATA` (or the `--out DATA` suggested for `--out DATA.onnx`) wrote the model files among the labelled
    films."""
    site = tmp_path / "site"
    shutil.copytree(tiny_data / "test", site)
    given = out.format(data=site)
    assert main(["set-threshold", "--model", str(tiny_run), "--data", str(site), "--out", given, "--n-boot", "20"]) == 2
    err = capsys.readouterr().err
    if given.endswith(".onnx"):  # the suggestion was `--out DATA`; a file beside the folder is not in it
        assert err.endswith(f"e.g. --out {site}.safetensors\n")
    else:  # a model file is suggested as a file outside the data, a folder as a folder
        example = "a file outside it, e.g. --out runs/site.safetensors" if given.endswith(".safetensors") else \
            "a folder outside it, e.g. --out runs/site"
        assert err.startswith(f"pneumoscan: error: {given}: is") and err.endswith(
            f" the data folder {site}, where what is written would sit among its labelled films; give --out "
            f"{example}\n")
    assert sorted(p.name for p in site.iterdir()) == ["NORMAL", "PNEUMONIA"]
    assert not (site / "NORMAL" / "run").exists()


def test_the_table_shows_npv_beside_precision(local) -> None:
    """set-threshold warned that npv was undefined (a threshold calling every film PNEUMONIA) in a table that showed
    no npv: a NORMAL call's reliability is a clinician's question as a PNEUMONIA call's (precision) is."""
    from pneumoscan.errors import decimals
    from pneumoscan.evaluation.local_threshold import format_local_threshold

    (tn, _), (fn, _) = local.after["confusion_matrix"]["matrix"]
    rows = {line.split()[0]: line.split()[1:] for line in format_local_threshold(local).splitlines()[3:9]}
    assert list(rows) == ["recall", "specificity", "precision", "npv", "accuracy", "after:"]
    assert rows["npv"] == [decimals(local.before["npv"]["value"], 4), decimals(tn / (tn + fn), 4)]


def test_a_copy_of_a_model_without_an_export_is_said_with_the_export_command(local) -> None:
    from pneumoscan.evaluation.local_threshold import format_local_threshold

    assert local.onnx is None and not local.out.with_suffix(".onnx").exists()
    assert format_local_threshold(local).endswith(f"; export it first, so they load without torch: pneumoscan export "
                                                  f"--model {local.out} --out {local.out.with_suffix('.onnx')}")


def test_the_threshold_interval_draws_the_sites_patients_and_the_copy_stores_them(
        shared_patient_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A site with three films a patient: set-threshold's interval resampled them one by one as independent films
    (too narrow), and the copy stored no patients, so its borderline interval did the same. Both draw patients now;
    the copy stores them as indices, which the Predictor's interval uses."""
    from pneumoscan.evaluation.thresholds import threshold_ci95
    from tests.conftest import write_dicom

    site = tmp_path / "films"
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for p in range(6):
            for k in range(3):
                write_dicom(site / name / f"9.{label}.{p}.{k}", label, 900 + 100 * label + 10 * p + k,
                            patient_id=f"S{label}{p}", size=48)
    out = tmp_path / "site"
    assert main(["set-threshold", "--model", str(shared_patient_run), "--data", str(site), "--out", str(out),
                 "--target-recall", "0.8", "--n-boot", "200", "--json", str(tmp_path / "t.json")]) == 0
    assert ("resampled by patient: the 12 patients each drawn with all of their films); it was"
            in capsys.readouterr().out)
    meta = read_meta(out / "model.safetensors")
    record = json.loads((tmp_path / "t.json").read_text())
    samples = [s.path.name for s in evaluation_samples(site, None)[1]]
    groups = meta.val_scores["groups"]
    assert len(groups) == 36 and len(set(groups)) == 12
    assert samples == [f"9.{label}.{p}.{k}" for label in (0, 1) for p in range(6) for k in range(3)]
    labels, probs = meta.val_scores["labels"], meta.val_scores["probs"]
    patients = [f"S{label}{p}" for label in (0, 1) for p in range(6) for _ in range(3)]  # as discovered: sorted
    assert [[g == h for h in groups] for g in groups] == [[a == b for b in patients] for a in patients]
    assert record["threshold_ci95"] == list(threshold_ci95(labels, probs, 0.8, n_boot=200, groups=patients))
    assert record["threshold_ci95"] != list(threshold_ci95(labels, probs, 0.8, n_boot=200))
    # drawn from the stored indices, the interval is the one set-threshold printed (with predict's resamples)
    predictor = Predictor(out / "model.safetensors", backend="torch")
    assert predictor.threshold_ci95 == threshold_ci95(labels, probs, 0.8, groups=patients)
    assert predictor.threshold_resampled["resampled"] == "patients"


def test_a_model_recording_no_patient_key_groups_the_films_it_scores_by_their_manifest_s_patients(
        tmp_path: Path) -> None:
    """The shipped model records no --patient-key. Its evaluation of a hospital's manifest with a patient column took
    the films as independent (edb67a9 keyed them by name, as such runs' training films are read), so the intervals
    were about twice too narrow: the scored films are grouped by `auto`, a manifest's patients and DICOM IDs."""
    import warnings

    from pneumoscan.evaluation.evaluate import evaluate

    rows = ["path,label,patient"]
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for p in range(3):
            for k in range(2):
                film = tmp_path / name / f"f{p}{k}.jpeg"
                write_xray(film, label, 10 * label + 3 * p + k, size=48)
                rows.append(f"{film},{name},{name[0]}{p}")
    manifest = tmp_path / "site.csv"
    manifest.write_text("\n".join(rows) + "\n")
    predictor = Predictor(None, backend="torch")
    assert "patient_key" not in predictor.meta.training.get("config", {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(predictor, manifest, n_boot=20, progress=False)
    assert sorted(set(result.patients or [])) == ["N0", "N1", "N2", "P0", "P1", "P2"]
    assert (result.summary["intervals"]["resampled"], result.summary["intervals"]["n_resampled"]) == ("patients", 6)


def test_the_export_command_a_copy_gives_can_be_pasted_for_a_path_with_a_space(tmp_path: Path) -> None:
    import shlex

    from pneumoscan.evaluation.local_threshold import export_command

    model = tmp_path / "site copy" / "model.safetensors"
    assert shlex.split(export_command(model)) == ["pneumoscan", "export", "--model", str(model),
                                                  "--out", str(model.with_suffix(".onnx"))]


@pytest.mark.parametrize("command", ["set-threshold", "evaluate"])
def test_scoring_val_opens_no_file_of_test(command: str, tmp_path: Path) -> None:
    """Listing test/ to find the splits opened its .dcm and extensionless files for their first bytes, though
    `set-threshold --split val` and `evaluate --split val` score none of them (test/ is for final reporting); a model
    trained with --patient-key name reads no key from them either, so none is opened now."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    data = tmp_path / "data"
    dicoms = write_dicom_test_split(data)
    run = tmp_path / "run"
    train(TrainConfig(data=str(data), out=str(run), model="cnn", image_size=16, epochs=1, batch_size=16,
                      patient_key="name", cache_dir=str(tmp_path / "cache")), progress=False)
    extra = ["--target-recall", "0.9", "--out", str(tmp_path / "site")] if command == "set-threshold" else []
    with files_opened_under(data / "test") as opened:
        assert main([command, "--model", str(run), "--data", str(data), "--split", "val", "--n-boot", "5",
                     "--cache-dir", str(tmp_path / "cache"), *extra]) == 0
    assert opened == [] and all(path.exists() for path in dicoms)
