from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pneumoscan.artifact import ArtifactMeta, load_artifact, read_meta, resolve_model_path, save_artifact
from pneumoscan.data.preprocess import Preprocessing
from pneumoscan.errors import InputError
from pneumoscan.models.registry import create_model
from pneumoscan.training.checkpoint import atomic_torch_save, load_checkpoint


class _Evil:
    """Any class that is not an allowed global must be refused by the checkpoint loader."""


def test_artifact_round_trip(tmp_path: Path) -> None:
    model = create_model("cnn", widths=(8, 16, 32, 32)).eval()  # a non-default config must round-trip
    meta = ArtifactMeta(model_name="cnn", model_config={"widths": [8, 16, 32, 32], "dropout": 0.3}, image_size=96,
                        mean=0.48, std=0.23, threshold=0.37, val_scores={"labels": [0, 1, 1], "probs": [0.1, 0.4, 0.9]})
    path = save_artifact(tmp_path / "m.safetensors", model, meta)
    loaded, meta2 = load_artifact(path)
    assert meta2 == meta
    x = torch.randn(2, 1, 96, 96)
    assert torch.allclose(loaded(x), model(x))
    assert meta2.threshold_for_recall(1.0) == pytest.approx(0.25)  # midway between 0.4 and the next score below
    assert not list(tmp_path.glob(".*tmp"))


def test_an_artifact_loads_onto_the_device_asked_for_else_the_one_device_for_picks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: the meta device stands in for CUDA (loading needs no values)."""
    import pneumoscan.inference.batch as batch

    meta = ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.5, std=0.25)
    path = save_artifact(tmp_path / "m.safetensors", create_model("cnn"), meta)
    monkeypatch.setattr(batch, "device_for", lambda preferred=None: torch.device(preferred or "meta"))
    assert {t.device.type for t in load_artifact(path)[0].state_dict().values()} == {"meta"}
    assert {t.device.type for t in load_artifact(path, "cpu")[0].state_dict().values()} == {"cpu"}  # as export asks


def test_an_artifact_loaded_onto_cuda_by_name_computes_in_full_float32(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`load_artifact(path, "cuda")` (a notebook's, a script's) turns cuDNN's TF32 off as `device_for()` does: with it
    on, a GPU's scores drift from the stored validation scores and threshold. No GPU here: the move is recorded."""
    meta = ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.5, std=0.25)
    path = save_artifact(tmp_path / "m.safetensors", create_model("cnn"), meta)
    moved_to: list[torch.device] = []

    def to(self: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        moved_to.append(torch.device(device))
        return self

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # cuDNN's default; put back afterwards
    monkeypatch.setattr(torch.nn.Module, "to", to)
    load_artifact(path, "cuda")
    assert moved_to == [torch.device("cuda")]
    assert not torch.backends.cudnn.allow_tf32


def test_preprocessing_round_trips_through_the_flat_json_header() -> None:
    meta = ArtifactMeta(model_name="cnn", model_config={}, image_size=64, mean=0.4812345678901, std=0.2345678901234,
                        equalize=True)
    assert meta.preprocessing == Preprocessing(0.4812345678901, 0.2345678901234, equalize=True)
    header = json.loads(meta.to_json())
    assert (header["mean"], header["std"], header["equalize"]) == (meta.mean, meta.std, True)
    assert "preprocessing" not in header  # artifacts written before it existed read the same fields
    assert ArtifactMeta.from_json(meta.to_json()).preprocessing == meta.preprocessing
    assert ArtifactMeta(model_name="cnn", model_config={}, image_size=64, mean=0.5, std=0.25).preprocessing.equalize is False


def test_bad_model_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no model.safetensors"):
        resolve_model_path(tmp_path)
    bogus = tmp_path / "x.safetensors"
    bogus.write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a pneumoscan model file"):
        read_meta(bogus)
    export = tmp_path / "model.onnx"
    export.write_bytes(b"onnx")
    with pytest.raises(InputError, match=r"an ONNX export, not a model; --model takes a run folder or a model\.safetensors"):
        resolve_model_path(export)


def test_a_pretraining_given_as_the_model_is_named_with_the_train_init_command(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture) -> None:
    """Its folder, or its weights, were refused as 'no model.safetensors; train first' and 'without pneumoscan
    metadata': the user had pretrained, and is told to train from them with --init."""
    from safetensors.torch import save_file

    from pneumoscan.artifact import PRETRAIN_CHECKPOINT, PRETRAINED_META_KEY, PRETRAINED_NAME
    from pneumoscan.cli import main

    pre = tmp_path / "pre"
    pre.mkdir()
    weights = pre / PRETRAINED_NAME
    save_file({"stem.0.weight": torch.zeros(2)}, str(weights), metadata={PRETRAINED_META_KEY: json.dumps({"epochs": 1})})
    init = f"`pneumoscan train --data DATA --init {weights} --out RUN`"
    for given in (pre, weights):
        with pytest.raises(InputError, match="a pretraining") as err:
            read_meta(resolve_model_path(given))
        assert str(err.value).startswith(f"{given}: a pretraining (`pneumoscan pretrain`), not a trained model")
        assert init in str(err.value) and "finished" not in str(err.value)
        assert main(["predict", "--model", str(given), str(tmp_path / "x.png")]) == 2
        assert capsys.readouterr().err == f"pneumoscan: error: {err.value}\n"
    weights.unlink()  # interrupted: its checkpoint alone
    (pre / PRETRAIN_CHECKPOINT).write_bytes(b"checkpoint")
    with pytest.raises(InputError) as err:
        resolve_model_path(pre)
    assert f"{init} once the pretraining has finished (`pneumoscan pretrain --data DATA --out {pre} --resume`" \
        in str(err.value)
    with pytest.raises(InputError) as err:  # its checkpoint given as the model: 'header too large' before
        resolve_model_path(pre / PRETRAIN_CHECKPOINT)
    assert str(err.value).startswith(f"{pre / PRETRAIN_CHECKPOINT}: a pretraining (`pneumoscan pretrain`)")


def test_checkpoint_weights_only(tmp_path: Path) -> None:
    atomic_torch_save({"a": torch.ones(2), "state": {"epoch": 3, "history": [{"x": 1.0}]}}, tmp_path / "c.pt")
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt["state"]["epoch"] == 3
    torch.save({"evil": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(tmp_path / "evil.pt")


def _edited(tmp_path: Path, **header: object) -> Path:
    """A cnn artifact whose JSON header is the valid one with `header` written over it (an edited file)."""
    from safetensors.torch import save_file

    meta = ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.5, std=0.25)
    path = save_artifact(tmp_path / "model.safetensors", create_model("cnn"), meta)
    tensors = load_artifact(path, "cpu")[0].state_dict()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"pneumoscan": json.dumps({**json.loads(meta.to_json()), **header})})
    return path


@pytest.mark.parametrize(("header", "problem"), [
    ({"image_size": "32"}, "image_size '32': not a whole number of pixels from 1 to 4096"),
    ({"image_size": 0}, "image_size 0: not a whole number of pixels from 1 to 4096"),
    ({"image_size": 32.5}, "image_size 32.5: not a whole number of pixels from 1 to 4096"),
    ({"mean": "x"}, "mean 'x': not a finite number"),
    ({"std": 0}, "std 0: not a finite number above 0"),
    ({"threshold": 2.0}, "threshold 2.0: not a number from 0 to 1"),
    ({"threshold": float("nan")}, "threshold nan: not a number from 0 to 1"),
    ({"threshold": None}, "threshold None: not a number from 0 to 1"),
    ({"target_recall": 2.0}, "target_recall 2.0: neither null nor a number above 0 and at most 1"),
    ({"class_names": ["NORMAL"]}, "class_names ['NORMAL']: not two different names"),
    ({"class_names": "NORMAL"}, "class_names 'NORMAL': not two different names"),
    ({"model_config": [1]}, "model_config [1]: not a JSON object"),
    ({"training": [1]}, "training [1]: not a JSON object"),
    ({"tta": "yes"}, "tta 'yes': not true or false"),
    ({"model_name": None}, "model_name None: not a model name"),
    ({"threshold_source": {"data": "site"}}, "threshold_source {'data': 'site'}: neither empty nor where set-threshold "
                                             "chose the threshold (data, split, n_normal, n_pneumonia, date, "
                                             "previous_threshold)"),
])
def test_an_edited_header_is_refused_in_one_line_naming_the_field(tmp_path: Path, header: dict, problem: str) -> None:
    path = _edited(tmp_path, **header)
    assert _refusal(path) == (f"{path}: its stored settings are unusable ({problem}), as in an edited file; restore "
                              f"the model file or train the model again")


def _refusal(path: Path) -> str:
    """The one-line InputError that both read_meta and load_artifact give for model file `path`."""
    messages = set()
    for read in (read_meta, load_artifact):
        with pytest.raises(InputError) as err:
            read(path)
        messages.add(str(err.value))
    (message,) = messages
    return message


@pytest.mark.parametrize("version", ["0.9.0", "0.1.0", None])
@pytest.mark.parametrize(("header", "problem"), [
    ({"invert": True}, "invert: a setting this pneumoscan does not know, which its predictions would leave out"),
    ({"invert": True, "window": [0, 1]}, "invert, window: settings this pneumoscan does not know, which its "
                                         "predictions would leave out"),
    ({"invert": True, "mean": None}, "invert: a setting this pneumoscan does not know, which its predictions would "
                                     "leave out"),
])
def test_a_model_with_a_setting_this_version_does_not_know_is_a_newer_pneumoscans(
        tmp_path: Path, header: dict, problem: str, version: str | None) -> None:
    """Every file so far says version 0.1.0, so a newer version's model (one that inverts its films, say) was called
    'as in an edited file; restore the model file or train the model again': a good model sent back to training.
    An unknown top-level field means a newer writer, whatever its version says."""
    from pneumoscan import __version__

    path = _edited(tmp_path, **header, version=version)
    assert _refusal(path) == (f"{path}: written by a newer pneumoscan than {__version__} ({problem}); upgrade "
                              f"pneumoscan, or load it with the version that wrote it")


def test_a_setting_of_another_shape_names_the_version_that_wrote_it(tmp_path: Path) -> None:
    from pneumoscan import __version__

    path = _edited(tmp_path, version="0.9.0", threshold={"value": 0.5})
    assert _refusal(path) == (f"{path}: its stored settings are unusable (threshold {{'value': 0.5}}: not a number "
                              f"from 0 to 1), written by pneumoscan 0.9.0, this is {__version__}; load it with the "
                              f"version that wrote it")


def test_the_headers_top_level_fields_are_the_settings_that_change_predictions() -> None:
    """A field added here makes every older pneumoscan refuse the new files (`unknown_settings`): informational data
    goes under `training` or `val_metrics` (the rule above ArtifactMeta); change this set only for a setting that
    changes predictions."""
    assert set(ArtifactMeta.__dataclass_fields__) == {
        "model_name", "model_config", "image_size", "mean", "std", "threshold", "target_recall", "train_prevalence",
        "class_names", "training", "val_metrics", "test_metrics", "val_scores", "threshold_source", "tta", "equalize",
        "crop", "model_sources", "version"}


def test_a_header_that_is_not_a_settings_object_is_refused_in_one_line(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    for text, problem in (("{not json", "not JSON"), ("[1, 2]", "not a JSON object"),
                          (json.dumps({"model_name": "cnn"}), "model_config, image_size, mean, std missing")):
        save_file({"w": torch.zeros(1)}, str(path), metadata={"pneumoscan": text})
        with pytest.raises(InputError, match=rf"^{path}: its stored settings are unusable \({problem}\), as in an "
                                             rf"edited file; restore the model file or train the model again$"):
            read_meta(path)


def test_a_written_artifact_passes_the_header_check_with_every_field_set(tmp_path: Path) -> None:
    meta = ArtifactMeta(model_name="cnn", model_config={"widths": [8, 16, 32, 32]}, image_size=16, mean=0.4, std=0.2,
                        threshold=1.0, target_recall=0.9, train_prevalence=0.7, class_names=["no", "yes"],
                        training={"seconds": 1}, val_metrics={"auc": 0.5}, tta=True, equalize=True, crop=True,
                        val_scores={"labels": [0, 1], "probs": [0.0, 1.0]}, threshold_source={"data": "site", "split": "all", "n_normal": 3, "n_pneumonia": 0,
                                          "date": "2026-11-27 07:00 UTC", "previous_threshold": 0.5})
    path = save_artifact(tmp_path / "m.safetensors", create_model("cnn", widths=(8, 16, 32, 32)), meta)
    assert read_meta(path) == meta
    assert read_meta(_edited(tmp_path, threshold=0, target_recall=None)).threshold == 0


def _with_weights(tmp_path: Path, meta: ArtifactMeta, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"pneumoscan": meta.to_json()})
    return path


@pytest.mark.parametrize(("config", "drop", "problem"), [
    ({"widths": "abc"}, None, r"model 'cnn' cannot be built from its stored config \(option widths takes a list of "
                              r"integers, not 'abc'\)"),
    ({"dropout": 2.0}, None, r"model 'cnn' cannot be built from its stored config \(option dropout=2.0: refused by "
                             r"its builder \(dropout probability has to be between 0 and 1, but got 2.0\)\)"),
    ({"widths": [8, 16, 32, 64]}, None, r"its weights do not fit its stored config \(size mismatch for "),
    ({}, "features.0.0.weight", r"its weights do not fit its stored config \(Missing key\(s\) in state_dict: "
                                r"\"features.0.0.weight\""),
])
def test_weights_that_do_not_fit_the_stored_config_are_refused_in_one_line(
        tmp_path: Path, config: dict, drop: str | None, problem: str) -> None:
    tensors = create_model("cnn").state_dict()
    tensors.pop(drop, None)
    path = _with_weights(tmp_path, ArtifactMeta(model_name="cnn", model_config=config, image_size=32, mean=0.5,
                                                std=0.25), tensors)
    with pytest.raises(InputError, match=rf"^{path}: {problem}.*as in an edited file; restore the model file or "
                                         rf"train the model again$"):
        load_artifact(path)


def test_an_input_size_other_than_the_one_the_model_is_built_for_is_refused(tmp_path: Path) -> None:
    meta = ArtifactMeta(model_name="mlp", model_config={"image_size": 32}, image_size=48, mean=0.5, std=0.25)
    path = save_artifact(tmp_path / "model.safetensors", create_model("mlp", image_size=32), meta)
    with pytest.raises(InputError, match=rf"^{path}: its stored input size 48 px is not the 32 px its model 'mlp' "
                                         rf"is built for, as in an edited file; restore the model file or train the "
                                         rf"model again$"):
        load_artifact(path)


_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(), st.text(max_size=4))
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=6)
_FIELDS = [*ArtifactMeta.__dataclass_fields__, "training.config", "training.data", "training.members",
           "val_scores.labels", "val_scores.probs"]


@pytest.fixture(scope="module")
def fuzz_artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    meta = ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.5, std=0.25, target_recall=0.9,
                        val_scores={"labels": [0, 1, 1, 0], "probs": [0.1, 0.7, 0.4, 0.3]},
                        training={"config": {"balance": "none"}, "data": {"train": {"NORMAL": 3, "PNEUMONIA": 5}}})
    tensors = {k: v.contiguous() for k, v in create_model("cnn").state_dict().items()}
    return tmp_path_factory.mktemp("fuzz") / "model.safetensors", json.loads(meta.to_json()), tensors


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(_FIELDS), value=_JSON)
def test_property_any_edited_setting_predicts_or_is_one_input_error(
        fuzz_artifact: tuple[Path, dict, dict[str, torch.Tensor]], field: str, value: object) -> None:
    """Whatever JSON value one stored setting is edited to, a Predictor of the file predicts and states its operating
    point, or refuses the file with an InputError (one line): never another exception."""
    import warnings

    import numpy as np
    from safetensors.torch import save_file

    from pneumoscan.inference.predictor import Predictor

    path, valid, tensors = fuzz_artifact
    header = json.loads(json.dumps(valid))
    outer, _, inner = field.partition(".")
    if inner:
        header[outer][inner] = value
    else:
        header[outer] = value
    save_file(tensors, str(path), metadata={"pneumoscan": json.dumps(header)})
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32), dtype=np.uint8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictor = Predictor(path, backend="torch")
            predictor.results(["a", "b"], images)
            predictor.operating_point()
    except InputError:
        pass


def test_a_models_metadata_shows_a_screenful_not_its_training_record() -> None:
    """What a notebook shows for `run.meta` or `predictor.meta`: the shipped model's took 478,621 characters, nearly
    all the fingerprints of its training films and its validation scores; those stay attributes."""
    from pneumoscan.artifact import default_model_path

    meta = read_meta(default_model_path())
    shown = repr(meta)
    assert len(shown) < 5_000 and "training=" not in shown and "val_scores=" not in shown
    assert shown.startswith(f"ArtifactMeta(model_name='resnet10', model_config={{}}, image_size={meta.image_size}, ")
    assert f"threshold={meta.threshold!r}" in shown and f"val_metrics={meta.val_metrics!r}" in shown
    assert meta.training and meta.val_scores["labels"]


def test_a_guard_file_given_as_the_model_names_the_model_it_guards(capsys: pytest.CaptureFixture[str]) -> None:
    """--model RUN/model.ood.safetensors (a tab completion away from model.safetensors) said 'safetensors file
    without pneumoscan metadata; pass a model written by pneumoscan train', though pneumoscan wrote it."""
    from pneumoscan.artifact import default_model_path
    from pneumoscan.cli import main
    from pneumoscan.inference.ood import guard_path

    guard = guard_path(None)
    message = (f"{guard}: the chest X-ray guard of a model (fit-guard writes it beside the model), not a model; pass "
               f"the model it guards, {default_model_path()}, which reads its guard by itself")
    with pytest.raises(InputError) as err:
        read_meta(guard)
    assert str(err.value) == message
    assert main(["predict", "--model", str(guard), str(guard)]) == 2
    assert capsys.readouterr().err == f"pneumoscan: error: {message}\n"


@pytest.mark.parametrize(("name", "beside"), [("guard.safetensors", None), ("site.ood.safetensors", None),
                                              ("site.ood.safetensors", "site.safetensors")])
def test_a_guard_file_given_as_the_model_names_a_model_only_when_one_is_beside_it(
        tmp_path: Path, name: str, beside: str | None) -> None:
    """fit-guard --out can be any name: a guard saved as guard.safetensors was answered 'pass the model it guards,
    guard.safetensors.safetensors', a file that does not exist."""
    from pneumoscan.inference.ood import guard_path

    guard = tmp_path / name
    guard.write_bytes(guard_path(None).read_bytes())
    if beside is not None:
        (tmp_path / beside).write_bytes(b"")
    with pytest.raises(InputError) as err:
        read_meta(guard)
    advice = (f"pass the model it guards, {tmp_path / beside}, which reads its guard by itself" if beside else
              "pass the model it was fitted for")
    assert str(err.value) == (f"{guard}: the chest X-ray guard of a model (fit-guard writes it beside the model), not "
                              f"a model; {advice}")


def test_an_image_given_as_the_model_says_where_the_film_goes(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """predict --model film.jpeg (and gradcam(model, film) with its arguments swapped) said 'not a pneumoscan model
    file (Error while deserializing header: header too large); pass a model.safetensors written by pneumoscan'."""
    import pneumoscan
    from pneumoscan.cli import main

    film = Path(pneumoscan.__file__).parents[2] / "sample" / "chest_xray" / "train" / "NORMAL" / "IM-0240-0001.jpeg"
    assert main(["predict", "--model", str(film), str(film)]) == 2
    assert capsys.readouterr().err == (f"pneumoscan: error: {film}: an image, not a model; --model takes a run folder "
                                       f"or a model.safetensors (or nothing: the shipped model), and the films come "
                                       f"after the options\n")
    with pytest.raises(InputError, match=r": an image, not a model; `model` takes a run folder or a model\.safetensors "
                                         r"\(or None: the shipped model\), and the film goes to predict\(image\) or "
                                         r"gradcam\(image\)$"):
        pneumoscan.gradcam(tmp_path, film)


@pytest.mark.parametrize("zipped", [False, True])
def test_a_pickled_file_given_as_the_model_is_refused_unloaded_saying_why(tmp_path: Path, zipped: bool) -> None:
    """A .pt checkpoint was refused as 'Error while deserializing header: header too large', which reads as a broken
    model file; it is a pickle, which is never loaded (its code does not run)."""
    import pickle

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (tmp_path / "ran",))

    path = tmp_path / "model.pt"
    if zipped:
        torch.save({"weights": torch.zeros(2)}, path)  # plain tensors: torch's zip format
    else:
        path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(InputError) as err:
        load_artifact(path)
    assert str(err.value) == (f"{path}: not a pneumoscan model file (a pickle as torch.save writes, which pneumoscan "
                              f"never loads: unpickling can run code); pass a model.safetensors written by pneumoscan")
    assert not (tmp_path / "ran").exists()


def test_a_zipped_model_is_told_apart_from_a_torch_checkpoint_and_a_torn_model_from_a_pickle(tmp_path: Path) -> None:
    """`zip run1.zip model.safetensors` given as the model was called 'a pickle as torch.save writes' (any zip was),
    and so was a truncated model file whose header length happens to begin with a pickle's bytes (80 05)."""
    import zipfile

    model = create_model("mlp").eval()
    meta = ArtifactMeta(model_name="mlp", model_config={}, image_size=32, mean=0.5, std=0.25)
    path = save_artifact(tmp_path / "run1" / "model.safetensors", model, meta)
    archive = tmp_path / "run1.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(path, "run1/model.safetensors")
    with pytest.raises(InputError) as err:
        read_meta(archive)
    assert str(err.value) == (f"{archive}: a zip archive, not a model file; unzip it and pass the model.safetensors "
                              f"inside (run1/model.safetensors)")
    torn = tmp_path / "torn.zip"
    torn.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(InputError, match="a damaged zip archive, not a model file"):
        read_meta(torn)
    data = bytearray(path.read_bytes())
    data[:8] = (0x0580).to_bytes(8, "little")  # a header of 1,408 bytes: the file begins 80 05, as a pickle does
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(bytes(data[:600]))  # cut inside its header
    with pytest.raises(InputError) as err:
        read_meta(cut)
    assert "pickle" not in str(err.value) and str(err.value).startswith(f"{cut}: not a pneumoscan model file (")


def test_stored_patient_indices_give_the_bootstrap_the_draws_of_the_keys() -> None:
    """A model stores its scored films' patients as integers, not their IDs; read back, they must draw the very
    resamples the keys drew, so a model's interval is the one computed when it was written (set-threshold's)."""
    from pneumoscan.artifact import stored_scores
    from pneumoscan.evaluation.thresholds import threshold_ci95

    rng = np.random.default_rng(1)
    keys = [f"id{k}" for k in rng.permutation(np.repeat(np.arange(12), 2))] + [None, None]  # 24 films of 12, 2 alone
    labels = [i % 2 for i in range(26)]
    probs = np.clip(rng.normal(0.3 + 0.4 * np.array(labels), 0.2), 0, 1).tolist()
    scores = stored_scores(labels, probs, keys)
    assert not any(isinstance(g, str) for g in scores["groups"]) and scores["groups"][-2:] == [-1, -1]
    meta = ArtifactMeta("cnn", {}, 32, 0.5, 0.25, val_scores=scores)
    groups = meta.score_groups()
    assert threshold_ci95(labels, probs, 0.9, n_boot=300, groups=groups) == \
        threshold_ci95(labels, probs, 0.9, n_boot=300, groups=keys)
    assert ArtifactMeta("cnn", {}, 32, 0.5, 0.25, val_scores={"labels": labels, "probs": probs}).score_groups() is None


def test_the_commands_a_run_file_and_a_pretraining_message_give_can_be_pasted_for_a_path_with_a_space(
        tmp_path: Path) -> None:
    """`pneumoscan train --out my runs/r 1 --resume` and `--init my pre/pretrained.safetensors` split in a shell."""
    import shlex

    from pneumoscan.artifact import finish_command, _pretraining_message

    run = tmp_path / "my runs" / "r 1"
    assert shlex.split(finish_command(run).split("`")[1]) == ["pneumoscan", "train", "--out", str(run), "--resume"]
    weights = tmp_path / "my pre" / "pretrained.safetensors"
    commands = [shlex.split(part) for part in _pretraining_message(weights.parent, weights).split("`")[3::2]]
    assert commands[0][-4:] == ["--init", str(weights), "--out", "RUN"]
    assert commands[1][-3:] == ["--out", str(weights.parent), "--resume"]


def test_an_input_size_no_model_can_train_at_is_refused_as_too_large_not_as_memory(tmp_path: Path) -> None:
    """A header edited to image_size 1000000 passed the check, and predict then said the machine ran out of memory
    and to give fewer or smaller films. The largest size a header may hold is the largest `train` takes; a larger
    one, which versions before this limit trained at, is said to be too large for this version, not an edit."""
    from pneumoscan.training.config import MAX_IMAGE_SIZE, TrainConfig

    assert read_meta(_edited(tmp_path, image_size=MAX_IMAGE_SIZE)).image_size == MAX_IMAGE_SIZE
    TrainConfig(data="DATA", out="run", image_size=MAX_IMAGE_SIZE).check()
    path = _edited(tmp_path, image_size=MAX_IMAGE_SIZE + 1)
    assert _refusal(path) == (f"{path}: image_size 4097: larger than the 4096 px this version of pneumoscan takes; "
                              f"load it with the version that wrote it, or train the model again at --image-size 4096 "
                              f"or less")
    with pytest.raises(InputError, match="must be from 16 to 4096"):
        TrainConfig(data="DATA", out="run", image_size=MAX_IMAGE_SIZE + 1).check()
