"""Per-image prediction CSVs: probabilities survive the round trip exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoscan.artifact import read_meta
from pneumoscan.data.labels import Sample
from pneumoscan.evaluation.evaluate import read_predictions, write_predictions
from pneumoscan.evaluation.metrics import recall


def test_predictions_round_trip_exactly(tmp_path: Path) -> None:
    # float32 sigmoid outputs; a stored threshold is one of them, so rounding could move a case below it
    probs = np.array([0.44827404618263245, 0.4496161937713623, 1e-9, 0.9999999], dtype=np.float32)
    samples = [Sample(Path(f"x{i}.png"), i % 2) for i in range(len(probs))]
    write_predictions(tmp_path / "p.csv", samples, probs)
    _, _, back = read_predictions(tmp_path / "p.csv")
    assert back.tolist() == [float(p) for p in probs]


def test_val_predictions_reach_the_target_recall_at_the_stored_threshold(tiny_run: Path) -> None:
    meta = read_meta(tiny_run / "model.safetensors")
    _, labels, probs = read_predictions(tiny_run / "val_predictions.csv", bases=[tiny_run])
    assert probs.tolist() == meta.val_scores["probs"]
    assert recall(labels, (probs >= meta.threshold).astype(int)) >= meta.target_recall


def test_images_the_guard_refuses_are_scored_but_named(fitted: Path, sample_films: Path, tmp_path: Path) -> None:
    import shutil
    import warnings

    import pytest

    from pneumoscan.evaluation.evaluate import GuardWarning, evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import colour_photo

    data = tmp_path / "site"
    shutil.copytree(sample_films, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10).summary["refused_by_guard"]
    (data / "NORMAL" / "holiday.jpg").write_bytes(colour_photo())
    with pytest.warns(GuardWarning, match=rf"{len(before) + 1} of \d+ images are ones the model refuses at predict "
                                          rf"time \({len(before) + 1} look unlike chest X-rays to its guard\)"):
        result = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10)
    new = sorted(set(result.summary["refused_by_guard"]) - set(before))
    assert len(new) == 1 and "holiday.jpg: not a chest X-ray: colour image" in new[0]
    assert result.summary["n"] == len(list(data.glob("*/*")))  # still scored: the figures are not flattered


def test_a_black_and_white_film_is_named_as_refused(fitted: Path, sample_films: Path, tmp_path: Path) -> None:
    """The grey-level and two-tone rules need each file as decoded, not the model's copy: evaluate gets the grey levels
    and the two-tone share from the image cache, which measured them when it decoded the files."""
    import shutil
    import warnings

    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import dithered, dithered_jpeg

    data = tmp_path / "site"
    for label in ("NORMAL", "PNEUMONIA"):
        (data / label).mkdir(parents=True)
        for film in sorted((sample_films / label).iterdir())[:2]:
            shutil.copy(film, data / label)
    (data / "PNEUMONIA" / "dithered.png").write_bytes(dithered())
    (data / "PNEUMONIA" / "dithered.jpeg").write_bytes(dithered_jpeg(quality=95))
    for _ in range(2):  # decoded, then read back from the cache
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10)
        refused = [r for r in result.summary["refused_by_guard"] if "dithered.png" in r]
        assert refused and refused[0].endswith("dithered.png: binary (black-and-white) image: 2 grey levels; "
                                               "send the original radiograph")
        refused = [r for r in result.summary["refused_by_guard"] if "dithered.jpeg" in r]
        assert refused and refused[0].endswith("dithered.jpeg: binary (black-and-white) image: 100% of its pixels "
                                               "near black or white; send the original radiograph")
        assert result.summary["n"] == 6  # still scored


def test_a_lateral_dicom_is_named_as_refused_by_its_view_from_the_cache(
        fitted: Path, tmp_path: Path, monkeypatch) -> None:
    """predict refuses a DICOM whose View Position says lateral; evaluate scored it as a frontal film and counted it
    nowhere, as the image cache kept no header value. It is named under refused_by_guard (and scored, as the guard's
    other refusals are), the second time from the cache without reading the header again."""
    import warnings

    from pneumoscan.data import cache as cache_module
    from pneumoscan.evaluation.evaluate import GuardWarning, evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import LATERAL, site_with_dicoms

    data = site_with_dicoms(tmp_path / "site")
    with pytest.warns(GuardWarning, match=r"1 is a DICOM film of a view other than plain frontal \(AP "
                                          r"or PA\) by the header"):
        cold = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10).summary

    def read_again(data: object) -> None:
        raise AssertionError("a header read again")

    monkeypatch.setattr(cache_module, "not_frontal_view", read_again)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10).summary
    for summary in (cold, warm):
        named = [r for r in summary["refused_by_guard"] if ".dcm" in r]
        assert named == [f"{data / 'NORMAL' / 'lateral.dcm'}: {LATERAL}"]
        assert summary["n"] == 6  # still scored
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unguarded = evaluate(Predictor(fitted, backend="torch", guard=False), data, n_boot=10).summary
    assert unguarded["refused_by_guard"] == []  # without a guard, predict scores it too


def test_a_negative_bootstrap_seed_is_refused_up_front(tmp_path: Path, capsys) -> None:
    from pneumoscan.cli import main

    assert main(["evaluate", "--data", str(tmp_path / "none"), "--seed", "-1"]) == 2
    assert "--seed -1: must be 0 or more" in capsys.readouterr().err


def test_a_warm_cache_gives_the_guard_its_file_cues_without_reading_the_files(
        fitted: Path, sample_films: Path, tmp_path: Path, monkeypatch) -> None:
    """Colourfulness and the two-tone share (a full-size JPEG decode) are measured once, when the cache is built."""
    import shutil
    import warnings

    from pneumoscan.data import cache as cache_module
    from pneumoscan.data import file_cues
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import colour_photo, dithered_jpeg

    data = tmp_path / "site"
    shutil.copytree(sample_films, data)
    (data / "NORMAL" / "holiday.jpg").write_bytes(colour_photo())
    (data / "PNEUMONIA" / "dithered.jpeg").write_bytes(dithered_jpeg(quality=95))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cold = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10).summary["refused_by_guard"]

        def read_again(source: object, *args: object) -> float:
            raise AssertionError(f"{source}: a file cue measured again")

        for module in (cache_module, file_cues):
            monkeypatch.setattr(module, "colourfulness", read_again)
            monkeypatch.setattr(module, "jpeg_cues", read_again)
        warm = evaluate(Predictor(fitted, backend="torch"), data, n_boot=10).summary["refused_by_guard"]
    assert warm == cold and any("holiday.jpg: not a chest X-ray: colour image" in r for r in warm)
    assert any("dithered.jpeg: binary (black-and-white) image" in r for r in warm)


def test_check_bootstrap_names_the_option() -> None:
    from pneumoscan.errors import InputError
    from pneumoscan.evaluation.evaluate import check_bootstrap

    with pytest.raises(InputError, match=r"^--n-boot 0: must be at least 1$"):
        check_bootstrap(0, 0)
    with pytest.raises(InputError, match=r"^--seed -1: must be 0 or more$"):
        check_bootstrap(10, -1)
    check_bootstrap(1, 0)


def test_a_failed_json_leaves_the_predictions_as_they_were(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """--predictions was written before --json: a full disk at the JSON left a new CSV (and its folder) behind, or
    the CSV already there replaced by one whose JSON was never written."""
    from pneumoscan.cli import main
    from tests.conftest import disk_full

    write_text = Path.write_text

    def full_json(self: Path, text: str, *args: object, **kwargs: object) -> int:
        if ".json" not in self.name:
            return write_text(self, text, *args, **kwargs)
        write_text(self, text[: len(text) // 2])  # as a full disk does: part of the file, then the error
        raise disk_full()

    monkeypatch.setattr(Path, "write_text", full_json)
    predictions, metrics = tmp_path / "out" / "p.csv", tmp_path / "new" / "m.json"
    argv = ["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--split", "test", "--n-boot", "5",
            "--predictions", str(predictions), "--json", str(metrics)]
    assert main(argv) == 2
    assert capsys.readouterr().err.endswith(f"pneumoscan: error: {metrics}: cannot be written (No space left on "
                                            f"device); free disk space\n")
    assert list(tmp_path.iterdir()) == []  # the new CSV, and the folders made for both, removed
    predictions.parent.mkdir()
    predictions.write_text("path,label,prob\nearlier.png,0,0.25\n")
    assert main(argv) == 2
    assert predictions.read_text() == "path,label,prob\nearlier.png,0,0.25\n"  # the earlier one, as it was
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "p.csv"]


def test_evaluate_and_set_threshold_warn_about_a_film_under_both_labels(tiny_run: Path, tiny_data: Path,
                                                                       tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A film filed under NORMAL and, renamed, under PNEUMONIA is scored wrong once whatever the model says; train
    warned about it, evaluate and set-threshold (which scores with evaluate) did not."""
    import shutil

    from pneumoscan.cli import main

    data = tmp_path / "site"
    shutil.copytree(tiny_data / "test", data)
    args = {"evaluate": ["evaluate", "--model", str(tiny_run), "--data", str(data), "--n-boot", "10"],
            "set-threshold": ["set-threshold", "--model", str(tiny_run), "--data", str(data), "--n-boot", "10"]}
    assert main(args["evaluate"]) == 0
    assert "byte-identical" not in capsys.readouterr().err
    film = sorted((data / "NORMAL").iterdir())[0]
    copy = data / "PNEUMONIA" / f"copy of {film.name}"
    copy.write_bytes(film.read_bytes())
    for command, extra in (("evaluate", []), ("set-threshold", ["--out", str(tmp_path / "site.safetensors")])):
        assert main(args[command] + extra) == 0
        warned = [line for line in capsys.readouterr().err.splitlines() if "byte-identical" in line]
        assert warned == [f"pneumoscan: warning: 1 group of byte-identical images carries both labels, e.g. {film} "
                          f"(NORMAL) = {copy} (PNEUMONIA): one of them is scored wrong whatever the model "
                          f"says, which lowers the figures here (and moves a threshold chosen on them); keep the copy "
                          f"with the right label and remove the other (`pneumoscan audit {data}` lists them)"], command


def test_evaluate_resamples_patients_when_films_share_one(tiny_run: Path, tmp_path: Path) -> None:
    """Kermany names give each film's patient: 8 films of 4 patients, so the bootstrap resamples the 4 patients
    within each class (and the evaluation says so); the Wilson intervals stay per film."""
    import warnings

    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import write_xray

    data = tmp_path / "site"
    for p in range(2):
        for k in range(2):
            write_xray(data / "NORMAL" / f"IM-{p:04d}-{k + 1:04d}.jpeg", 0, 10 * p + k, size=48)
            write_xray(data / "PNEUMONIA" / f"person{p}_virus_{k}.jpeg", 1, 100 + 10 * p + k, size=48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(Predictor(tiny_run, backend="torch"), data, n_boot=20, progress=False)
    assert sorted(set(result.patients or [])) == ["IM-0000", "IM-0001", "person0", "person1"]
    intervals = result.summary["intervals"]
    assert (intervals["resampled"], intervals["n_resampled"], intervals["n_boot"]) == ("patients", 4, 20)


def test_file_name_keys_joining_folders_are_no_patient_and_read_once(tiny_run: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each patient's film filed as `<class>/pt<i>/frontal.jpeg`: the file-name key 'frontal' made each class one
    patient, so the patient bootstrap drew the same films every time (zero-width intervals, reviewD). They are now
    films of no known patient, drawn alone, with train's warning; and each film's patient key is read once (the
    shared-patient count's keys are reused, not read again for the bootstrap)."""
    from collections import Counter

    from pneumoscan.data import patients
    from pneumoscan.evaluation.evaluate import PatientKeyWarning, evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import write_xray

    data = tmp_path / "site"
    for i in range(6):
        write_xray(data / "NORMAL" / f"pt{i}" / "frontal.jpeg", 0, i, size=48)
        write_xray(data / "PNEUMONIA" / f"pt{i}" / "frontal.jpeg", 1, 100 + i, size=48)
    reads: Counter = Counter()
    real = patients.dicom_patient_id
    monkeypatch.setattr(patients, "dicom_patient_id", lambda path: reads.update([Path(path)]) or real(path))
    with pytest.warns(PatientKeyWarning, match=r"'frontal', joins 12 images in 12 folders .*the bootstrap takes their "
                                               r"films for no known patient's and draws each alone; .*CSV manifest"):
        result = evaluate(Predictor(tiny_run, backend="torch"), data, n_boot=50, progress=False)
    assert result.patients == [None] * 12
    intervals = result.summary["intervals"]
    assert (intervals["resampled"], intervals["n_resampled"], intervals["unkeyed"]) == ("films", 12, 12)
    lo, hi = result.summary["brier"]["ci95"]
    assert lo < hi  # not one patient a class drawn whole every time
    assert result.summary["patients_in_training"] is not None  # the keys were read with the training films' ...
    assert {reads[s.path] for s in result.images.samples} == {1}  # ... and not again


def test_a_site_id_on_every_scored_film_is_judged_on_the_scored_data_not_the_training_data(
        shared_patient_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An outside set whose anonymiser wrote one site ID on every film: a placeholder to `audit`, so each film is
    keyed by its file name. Pooled with the training data's 28 real PatientIDs it was one patient a class (zero-width
    intervals), and moving the training data away changed that. The bootstrap's keys are now `audit`'s, each header
    still read once (the shared-patient count's reads are reused)."""
    import shutil
    import warnings
    from collections import Counter

    from pneumoscan.data import patients
    from pneumoscan.data.layout import discover
    from pneumoscan.evaluation.evaluate import evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import write_dicom

    ext = tmp_path / "ext"
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for i in range(4):
            write_dicom(ext / "test" / name / f"{name[0]}{i}.dcm", label, 700 + 10 * label + i, "SITE01", size=48)
    reads: Counter = Counter()
    real = patients.dicom_patient_id
    monkeypatch.setattr(patients, "dicom_patient_id", lambda path: reads.update([Path(path)]) or real(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(Predictor(shared_patient_run, backend="torch"), ext, n_boot=50, progress=False)
        audited = patients.dataset_keys(discover(ext), progress=False)
    assert result.summary["patients_in_training"] is not None  # the training data was found and keyed
    assert result.patients == [audited(s) for s in result.images.samples]
    assert len(set(result.patients)) == 8 and "SITE01" not in result.patients
    assert result.summary["intervals"]["resampled"] == "films"  # one film a patient
    lo, hi = result.summary["brier"]["ci95"]
    assert lo < hi
    assert {reads[s.path] for s in result.images.samples} == {2}  # once for the count, once for `audited` here
    with warnings.catch_warnings():  # the training data moved away: the same keys
        warnings.simplefilter("ignore")
        shutil.move(shared_patient_run.parent / "data", tmp_path / "moved")
        try:
            alone = evaluate(Predictor(shared_patient_run, backend="torch"), ext, n_boot=50, progress=False)
        finally:
            shutil.move(tmp_path / "moved", shared_patient_run.parent / "data")
    assert alone.summary["patients_in_training"] is None and alone.patients == result.patients
    reads.clear()  # the model's own data: the shared-patient count's keys are `audit`'s, taken on unread
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        own = evaluate(Predictor(shared_patient_run, backend="torch"), shared_patient_run.parent / "data", n_boot=20,
                       progress=False)
    assert sorted(own.patients or []) == ["N1", "P1", "T0", "T1"] and set(reads.values()) == {1}


def test_kermany_patients_with_films_in_subfolders_stay_patients(tiny_run: Path, tmp_path: Path) -> None:
    """Kermany's names give the patient within a split wherever the films sit: a patient's 2nd film in `NORMAL/b2/`
    made the patient 'of no known patient', each film drawn alone (too narrow), with advice that did not fit."""
    import warnings

    from pneumoscan.evaluation.evaluate import PatientKeyWarning, evaluate
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import write_xray

    data = tmp_path / "site"
    for p in range(6):
        write_xray(data / "test" / "NORMAL" / f"IM-{p:04d}-0001-0001.jpeg", 0, p, size=48)
        write_xray(data / "test" / "NORMAL" / "b2" / f"IM-{p:04d}-0001-0002.jpeg", 0, 50 + p, size=48)
        write_xray(data / "test" / "PNEUMONIA" / f"person{p}_virus_{p}.jpeg", 1, 100 + p, size=48)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(Predictor(tiny_run, backend="torch"), data, n_boot=20, progress=False)
    assert not [w for w in caught if issubclass(w.category, PatientKeyWarning)]
    assert None not in (result.patients or [None])
    intervals = result.summary["intervals"]
    assert (intervals["resampled"], intervals["n_resampled"], intervals.get("unkeyed", 0)) == ("patients", 12, 0)


def test_the_bootstrap_draws_test_dicom_films_named_jpeg_of_one_patient_together(tmp_path: Path) -> None:
    """evaluate counted test/'s two DICOM films named .jpg with PatientID N1 as one patient shared with the training
    data (as `audit` does), yet its bootstrap keyed them by name (`train`'s keys, which leave them unopened) and drew
    them as independent films: intervals narrower than when it resampled patients. Both now use the compared keys,
    whether taken on from the shared-patient count or read over the scored data set alone."""
    from pneumoscan.data.layout import discover
    from pneumoscan.data.patients import patients_in_training
    from pneumoscan.evaluation.evaluate import film_patients
    from tests.conftest import write_dicom

    data = tmp_path / "data"
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for p in range(3):
            write_dicom(data / "train" / name / f"1.2.{label}.{p}", label, 10 * p + label, patient_id=f"{name[0]}{p}",
                        size=16)
        for i in range(2):  # N9: a new patient; P1: one the model was trained on
            write_dicom(data / "test" / name / f"t{i}.jpg", label, 50 + 10 * label + i,
                        patient_id=("N9", "P1")[label], size=16)
    found = discover(data)
    training = {"config": {"data": str(data), "patient_key": "auto"}}
    shared, keyed = patients_in_training(found["test"], training, progress=False)
    assert shared == {"patients": 1, "films": 2, "by": ["DICOM PatientID"], "compared": 4}
    for keys in (keyed, None):
        groups = film_patients(found["test"], training, progress=False, keyed=keys, dataset=found)
        assert groups is not None and groups == ["N9", "N9", "P1", "P1"]
