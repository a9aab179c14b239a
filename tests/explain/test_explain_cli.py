from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan.cli import main


def test_explain_writes_png(tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    out = tmp_path / "figs" / "heatmap.png"
    assert main(["explain", str(image), "--model", str(tiny_run), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 200
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 10  # a drawn figure, not a blank canvas
    printed = capsys.readouterr().out
    assert "P(pneumonia)=" in printed and str(out) in printed


def test_explain_exits_with_predicts_code_for_a_film_the_guard_refuses(fitted: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`predict` exits 1 for a refused film and explain exited 2, the code of a user mistake; a missing file stays 2."""
    from tests.conftest import colour_photo

    photo = tmp_path / "photo.png"
    photo.write_bytes(colour_photo())
    assert main(["predict", str(photo), "--model", str(fitted)]) == 1
    assert main(["explain", str(photo), "--model", str(fitted), "--out", str(tmp_path / "h.png")]) == 1
    assert main(["explain", str(tmp_path / "gone.png"), "--model", str(fitted), "--out", str(tmp_path / "h.png")]) == 2
    assert "gone.png: file not found" in capsys.readouterr().err



@pytest.mark.parametrize("films", [2, 5])
def test_explain_given_several_films_says_it_draws_one_and_how_to_draw_each(films: int, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # `pneumoscan explain DIR/*.jpeg` (a notebook user's Grad-CAM of a few films) ended in argparse's
    # "unrecognized arguments: b.jpeg c.jpeg ..." under the top-level usage, never saying explain takes one film
    names = [str(tmp_path / f"film{i}.jpeg") for i in range(films)]
    for name in names:
        Path(name).write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        main(["explain", *names, "--model", str(tmp_path / "run")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pneumoscan explain ")
    shown = f"{names[0]}, {names[1]}" + (f" (and {films - 2} more)" if films > 2 else "")
    assert err.splitlines()[-1] == (
        f"pneumoscan explain: error: explain draws one film at a time, and was given {films} ({shown}); run it once "
        'per film: `for f in FILMS; do pneumoscan explain "$f" --model ' + str(tmp_path / "run") + '; done` (each '
        'writes NAME_heatmap.png)')
    assert not list(Path.cwd().glob("film*_heatmap.png"))


def test_explain_given_several_films_keeps_the_options_given_in_the_loop_it_advises(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the loop advised dropped --model and the operating point: pasted, it drew the shipped model's Grad-CAM
    (tmp_path / "b.jpeg").write_bytes(b"")
    run = tmp_path / "my runs" / "r1"
    with pytest.raises(SystemExit):
        main(["explain", str(tmp_path / "a.jpeg"), str(tmp_path / "b.jpeg"), "--model", str(run), "--threshold",
              "0.3", "--prevalence", "0.1", "--out", str(tmp_path / "h.png")])
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        f"`for f in FILMS; do pneumoscan explain \"$f\" --model '{run}' --threshold 0.3 --prevalence 0.1; done` "
        "(each writes NAME_heatmap.png; --out names one file)")


def test_explain_given_a_png_that_is_no_file_after_the_film_says_to_give_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `pneumoscan explain film.jpeg heatmap.png` (meaning the file to write) was told to run explain once per film
    film, heatmap = tmp_path / "film.jpeg", tmp_path / "heat map.png"
    with pytest.raises(SystemExit) as stop:
        main(["explain", str(film), str(heatmap), "--target-recall", "0.95"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan explain: error: explain draws one film, and {heatmap} after it is no file; to write the heatmap "
        f"to it, give --out: `pneumoscan explain {film} --target-recall 0.95 --out '{heatmap}'`")
    heatmap.write_bytes(b"")  # a film that exists is a second film
    with pytest.raises(SystemExit):
        main(["explain", str(film), str(heatmap)])
    assert "run it once per film" in capsys.readouterr().err


@pytest.mark.parametrize("given, out, said", [
    (["heat.png"], ["--out", "x.png"], "heat.png after it is no file"),
    (["b.jpeg", "c.jpg"], [], "c.jpg after it is no file"),
    (["c.jpg", "heat.png"], [], "c.jpg, heat.png after it are no files"),
], ids=["png-with-out", "typo", "two"])
def test_explain_given_a_path_that_is_no_file_after_the_film_says_it_is_none(
        given: list[str], out: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # `explain a.jpeg heat.png --out x.png` (heat.png no file) said "was given 2 (a.jpeg, heat.png)" and advised the
    # per-film loop, as for two films; so did a mistyped second film
    monkeypatch.chdir(tmp_path)
    Path("a.jpeg").write_bytes(b"")
    Path("b.jpeg").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        main(["explain", "a.jpeg", *given, *out])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan explain: error: explain draws one film, and {said}: file not found; check the path")

@pytest.mark.parametrize("given, said", [
    (["runs"], "was given 2 (a.jpeg, runs); runs is a directory, not an image file"),
    (["b.jpeg", "d"], "was given 3 (a.jpeg, b.jpeg (and 1 more)); d is a directory, not an image file"),
    (["d", "runs"], "was given 3 (a.jpeg, d (and 1 more)); d, runs are directories, not image files"),
], ids=["folder", "glob-with-a-subfolder", "two-folders"])
def test_explain_given_a_folder_after_the_film_says_it_is_one_and_how_to_draw_each(
        given: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # `explain a.jpeg runs/cnn` and `explain xrays/*` over a folder holding a subfolder said "d after it is no file:
    # file not found; check the path", though d exists
    monkeypatch.chdir(tmp_path)
    for name in ("a.jpeg", "b.jpeg"):
        Path(name).write_bytes(b"")
    for name in ("d", "runs"):
        Path(name).mkdir()
    with pytest.raises(SystemExit) as stop:
        main(["explain", "a.jpeg", *given])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"pneumoscan explain: error: explain draws one film at a time, and {said}; run it once per film: "
        f"`for f in FILMS; do pneumoscan explain \"$f\"; done` (each writes NAME_heatmap.png)")


SAID = "pneumoscan explain: error: explain draws one film, and "


@pytest.mark.parametrize(("argv", "error"), [
    # `explain a.jpeg runs/cnn`, --model forgotten, was told to run explain once per film, a loop that draws with
    # the shipped model
    (["a.jpeg", "runs/cnn", "--prevalence", "0.1"], "runs/cnn after it is a model; to draw with it, give --model: "
                                                     "`pneumoscan explain a.jpeg --model runs/cnn --prevalence 0.1`"),
    (["a.jpeg", "runs/cnn/model.safetensors"], "runs/cnn/model.safetensors after it is a model; to draw with it, "
                                               "give --model: `pneumoscan explain a.jpeg --model "
                                               "runs/cnn/model.safetensors`"),
    # the model first, as in model.predict(image): the same loop was suggested
    (["runs/cnn", "a.jpeg", "--threshold", "0.3"], "runs/cnn before it is a model; to draw with it, give --model: "
                                                   "`pneumoscan explain a.jpeg --model runs/cnn --threshold 0.3`"),
    # the command it gave dropped --out, and for RUN/model.onnx gave `--model RUN/model.onnx`, which --model refuses
    (["a.jpeg", "runs/cnn", "--out", "h.png"], "runs/cnn after it is a model; to draw with it, give --model: "
                                               "`pneumoscan explain a.jpeg --model runs/cnn --out h.png`"),
    (["a.jpeg", "runs/cnn/model.onnx", "--out", "h.png"], "runs/cnn/model.onnx after it is the ONNX export of the "
                                                          "run runs/cnn; to draw with it, give --model: `pneumoscan "
                                                          "explain a.jpeg --model runs/cnn --out h.png`"),
    # set-threshold --out RUN/site.safetensors writes RUN/site.onnx: the run's model is another operating point's
    (["a.jpeg", "runs/cnn/site.onnx"], "runs/cnn/site.onnx after it is the ONNX export of the model "
                                       "runs/cnn/site.safetensors; to draw with it, give --model: `pneumoscan explain "
                                       "a.jpeg --model runs/cnn/site.safetensors`"),
    # ... and outside a run folder (it gave the loop advice, which draws with the shipped model)
    (["a.jpeg", "models/site.onnx"], "models/site.onnx after it is the ONNX export of the model "
                                     "models/site.SafeTensors; to draw with it, give --model: `pneumoscan explain "
                                     "a.jpeg --model models/site.SafeTensors`"),
    (["a.jpeg", "exports/x.onnx"], "exports/x.onnx after it is an ONNX export, not a model; give the model it was "
                                   "exported from (its run folder or .safetensors file) as --model"),
    # other files of a run folder: its best.safetensors has no threshold, its last.pt is no model
    (["a.jpeg", "runs/cnn/best.safetensors"], "runs/cnn/best.safetensors after it is a file of the run runs/cnn; to "
                                              "draw with it, give --model: `pneumoscan explain a.jpeg --model "
                                              "runs/cnn`"),
    (["runs/cnn/last.pt", "a.jpeg"], "runs/cnn/last.pt before it is a file of the run runs/cnn; to draw with it, "
                                     "give --model: `pneumoscan explain a.jpeg --model runs/cnn`"),
    # the model first and a mistyped film: it suggested `--out nofilm.png`, drawing the run folder as a film
    (["runs/cnn", "nofilm.png"], "runs/cnn before it is a model; to draw with it, give --model: `pneumoscan explain "
                                 "nofilm.png --model runs/cnn`"),
], ids=["run-folder-after", "model-file-after", "run-folder-before", "out-kept", "onnx-export", "onnx-of-a-copy",
        "onnx-of-a-copy-outside-a-run", "onnx-alone", "best-weights", "checkpoint-first", "model-first-film-missing"])
def test_explain_given_a_model_beside_the_film_says_to_give_it_as_model(
        argv: list[str], error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a.jpeg").write_bytes(b"")
    for name in ("runs/cnn/model.safetensors", "runs/cnn/model.onnx", "runs/cnn/site.safetensors",
                 "runs/cnn/site.onnx", "runs/cnn/best.safetensors", "runs/cnn/last.pt", "models/site.SafeTensors",
                 "models/site.onnx", "exports/x.onnx"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        main(["explain", *argv])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == SAID + error


@pytest.mark.parametrize(("argv", "given", "weights"), [
    (["a.jpeg", "pre/pretrained.safetensors"], "pre/pretrained.safetensors after it", "pre/pretrained.safetensors"),
    (["a.jpeg", "copy.safetensors"], "copy.safetensors after it", "copy.safetensors"),  # told by its header
    (["a.jpeg", "pre/pretrain_last.pt"], "pre/pretrain_last.pt after it", "pre/pretrained.safetensors"),
    (["pre", "a.jpeg"], "pre before it", "pre/pretrained.safetensors"),
], ids=["weights", "renamed-weights", "checkpoint", "folder-first"])
def test_explain_given_a_pretraining_beside_the_film_says_what_it_is(
        argv: list[str], given: str, weights: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A pretraining's weights were given as the --model to draw with, which --model then refused ('a pretraining,
    not a trained model'), and its checkpoint or folder got the loop advice, which draws with the shipped model."""
    import numpy as np
    from safetensors.numpy import save_file

    from pneumoscan.artifact import PRETRAINED_META_KEY

    monkeypatch.chdir(tmp_path)
    Path("a.jpeg").write_bytes(b"")
    Path("pre").mkdir()
    for name in ("pre/pretrained.safetensors", "copy.safetensors"):
        save_file({"w": np.zeros(2, dtype=np.float32)}, name, metadata={PRETRAINED_META_KEY: "{}"})
    Path("pre/pretrain_last.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        main(["explain", *argv])
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == SAID + (
        f"{given} is a pretraining (`pneumoscan pretrain`), not a trained model: its weights are a starting point, "
        f"without the classifier or threshold a prediction needs; train from them with `pneumoscan train --data DATA "
        f"--init {weights} --out RUN`, then pass RUN as --model")


def test_explain_user_mistakes(tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    assert main(["explain", str(tmp_path / "missing.png"), "--model", str(tiny_run), "--out", str(tmp_path / "a.png")]) == 2
    assert "missing.png: file not found" in capsys.readouterr().err
    assert main(["explain", str(image), "--model", str(tiny_run), "--out", str(tmp_path / "a.jpg")]) == 2
    assert "ending in .png" in capsys.readouterr().err


def test_explain_mlp_is_a_clear_error(tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.artifact import ArtifactMeta, save_artifact
    from pneumoscan.models.registry import create_model

    path = save_artifact(tmp_path / "mlp.safetensors", create_model("mlp", image_size=32),
                         ArtifactMeta(model_name="mlp", model_config={"image_size": 32}, image_size=32, mean=0.3, std=0.25))
    image = sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    assert main(["explain", str(image), "--model", str(path), "--out", str(tmp_path / "h.png")]) == 2
    err = capsys.readouterr().err
    assert "mlp.safetensors" in err and "no convolutional layer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "h.png").exists()


def test_explain_draws_a_model_built_with_other_widths(tmp_path: Path, tiny_data: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A cnn of three blocks (Python API: create_model's widths) has no fourth block for a fixed layer name."""
    from pneumoscan.artifact import ArtifactMeta, save_artifact
    from pneumoscan.models.registry import create_model

    config = {"widths": [8, 16, 32]}
    path = save_artifact(tmp_path / "cnn3.safetensors", create_model("cnn", **config),
                         ArtifactMeta(model_name="cnn", model_config=config, image_size=32, mean=0.3, std=0.25))
    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    assert main(["explain", str(image), "--model", str(path), "--out", str(tmp_path / "h.png")]) == 0
    assert (tmp_path / "h.png").exists() and "P(pneumonia)=" in capsys.readouterr().out


def test_explain_refuses_what_the_guard_rejects(fitted: Path, sample_films: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import colour_photo

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(colour_photo())
    out = tmp_path / "photo.png"
    assert main(["explain", str(photo), "--model", str(fitted), "--out", str(out)]) == 1  # as predict: not a mistake
    err = capsys.readouterr().err
    assert f"{photo}: not a chest X-ray: colour image" in err and "no prediction or heatmap" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    xray = sorted((sample_films / "NORMAL").iterdir())[0]
    assert main(["explain", str(xray), "--model", str(fitted), "--out", str(out)]) == 0
    assert out.exists() and "P(pneumonia)=" in capsys.readouterr().out


def test_explain_draws_a_file_name_with_dollar_signs(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    """Two `$` in the file name started mathtext in the figure's title: `a$^$b.jpeg` ended in a traceback."""
    image = tmp_path / "a$^$b.jpeg"
    image.write_bytes(sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0].read_bytes())
    assert main(["explain", str(image), "--model", str(tiny_run), "--out", str(tmp_path / "h.png")]) == 0
    assert (tmp_path / "h.png").is_file()


def test_explain_labels_a_film_at_the_threshold_as_predict_does(tiny_run: Path, tiny_data: Path,
                                                                capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """explain scored with PyTorch and predict (--backend auto) with ONNX Runtime, about 1e-7 apart: the shipped model's
    threshold was one validation film's exact score (until thresholds were stored midway below it), and predict
    called that film NORMAL, explain PNEUMONIA."""
    from pneumoscan.data.preprocess import load_image
    from pneumoscan.inference.predictor import Predictor

    films = sorted((tiny_data / "test").rglob("*.jpeg"))
    images = np.stack([load_image(f, 32) for f in films])
    torch_p = Predictor(tiny_run, backend="torch").predict_images(images)
    onnx_p = Predictor(tiny_run, backend="onnx").predict_images(images)
    i = int(np.argmax(np.abs(torch_p - onnx_p)))
    assert torch_p[i] != onnx_p[i]
    threshold = repr(float(max(torch_p[i], onnx_p[i])))  # exactly one backend's score: the other falls just short
    assert main(["predict", str(films[i]), "--model", str(tiny_run), "--threshold", threshold]) == 0
    predicted = capsys.readouterr().out.split()[0]
    assert main(["explain", str(films[i]), "--model", str(tiny_run), "--threshold", threshold,
                 "--out", str(tmp_path / "h.png")]) == 0
    assert capsys.readouterr().out.split()[0] == predicted


def test_explain_refuses_a_dithered_film_saying_what_to_send(fitted: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import dithered

    film = tmp_path / "scan.png"
    film.write_bytes(dithered())
    out = tmp_path / "heat.png"
    assert main(["explain", str(film), "--model", str(fitted), "--out", str(out)]) == 1
    assert (f"{film}: binary (black-and-white) image: 2 grey levels; send the original radiograph; no prediction "
            "or heatmap made") in capsys.readouterr().err
    assert not out.exists()


def test_explain_decodes_the_image_once(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The figure's full-size film and the model's input come from one decode (they were two of the same file)."""
    import pneumoscan.data.decode as decode_module

    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]  # a grey JPEG, too small for draft mode to shrink
    real = decode_module._read_pil
    decodes = []

    def counted(*args: object) -> np.ndarray:
        decodes.append(args[1])
        return real(*args)

    monkeypatch.setattr(decode_module, "_read_pil", counted)
    assert main(["explain", str(image), "--model", str(tiny_run), "--out", str(tmp_path / "h.png")]) == 0
    assert decodes.count(str(image)) == 1  # (opening the ONNX backend decodes bundled sample X-rays of its own)


def test_explain_measures_a_pngs_guard_cues_on_its_one_decode(fitted: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With a guard, a PNG's dither energy is measured on the pixels decoded for the figure and the model (the cue
    decoded the lossless file a second time)."""
    from tests.conftest import UPRIGHT_FILM, count_pil_decoders

    image = tmp_path / "film.png"
    with Image.open(UPRIGHT_FILM) as im:
        im.convert("L").save(image)
    decoders = count_pil_decoders(monkeypatch)
    assert main(["explain", str(image), "--model", str(fitted), "--out", str(tmp_path / "h.png")]) == 0
    assert decoders.count("zip") == 1  # PNG's; the backend's own sample X-rays are JPEGs


def test_explain_says_when_a_film_is_borderline(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A film within the threshold's interval is said to be borderline, with the interval; one outside is not."""
    from pneumoscan.inference.predictor import Predictor
    from tests.conftest import interval_scores, with_scores

    films = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[:2]
    low, high = sorted(r.probability for r in Predictor(tiny_run, backend="torch").predict_files(films))
    step = (high - low) / 10
    model = with_scores(tiny_run, tmp_path / "placed.safetensors", *interval_scores(high - step, high + step, step / 10))
    printed = {}
    for film in films:
        assert main(["explain", str(film), "--model", str(model), "--out", str(tmp_path / "h.png")]) == 0
        printed[film] = capsys.readouterr().out
    inside = max(films, key=lambda f: Predictor(model, backend="torch").predict_files([f])[0].probability)
    lo, hi = Predictor(model, backend="torch").threshold_ci95
    assert f"borderline (P within the threshold's 95 % interval {lo:.4f} to {hi:.4f})" in printed[inside]
    assert [film for film in films if "borderline" in printed[film]] == [inside]


def test_explain_says_when_the_heatmap_is_empty(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A map with no positive evidence (seen on a briefly trained cnn's NORMAL films) draws as the bare film: the
    line and the figure's title say it is empty rather than leave it to look like a drawing fault."""
    import pneumoscan.explain.gradcam as gradcam_module

    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    assert main(["explain", str(image), "--model", str(tiny_run), "--out", str(tmp_path / "drawn.png")]) == 0
    assert "empty" not in capsys.readouterr().out
    monkeypatch.setattr(gradcam_module, "gradcam_for_image", lambda *args, **kwargs: np.zeros((32, 32), np.float32))
    assert main(["explain", str(image), "--model", str(tiny_run), "--out", str(tmp_path / "empty.png")]) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith("(empty: Grad-CAM found no positive evidence for "
                                     f"{printed.split()[0]})"), printed


def test_explain_without_out_writes_the_films_name_heatmap_in_the_current_folder(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # --out was required: `pneumoscan explain xray.jpeg` ended in argparse's "the following arguments are required"
    from tests.conftest import write_dicom

    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    uid = write_dicom(tmp_path / "export" / "1.2.840.113619.2.55", 1, 5)  # a UID name: no extension to drop
    monkeypatch.chdir(tmp_path)
    assert main(["explain", str(image), "--model", str(tiny_run)]) == 0
    assert main(["explain", str(uid), "--model", str(tiny_run)]) == 0
    printed = capsys.readouterr().out
    for name in (f"{image.stem}_heatmap.png", "1.2.840.113619.2.55_heatmap.png"):
        assert f"heatmap: {name}" in printed and (tmp_path / name).is_file(), name


def test_explain_takes_predicts_operating_point(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # explain had --threshold only: a film predicted at --target-recall or --prevalence could not be explained there
    films = sorted((tiny_data / "test").rglob("*.jpeg"))[:4]
    for options in (["--target-recall", "0.5"], ["--prevalence", "0.1"]):
        for film in films:
            assert main(["predict", str(film), "--model", str(tiny_run), *options]) == 0
            predicted = capsys.readouterr().out.split()[:2]
            assert main(["explain", str(film), "--model", str(tiny_run), *options, "--out",
                         str(tmp_path / "h.png")]) == 0
            assert capsys.readouterr().out.split()[:2] == predicted, (options, film)
    assert main(["explain", str(films[0]), "--model", str(tiny_run), "--target-recall", "0.5", "--threshold", "0.3",
                 "--out", str(tmp_path / "h.png")]) == 2
    assert "give either --threshold or --target-recall, not both" in capsys.readouterr().err


def test_explain_without_out_in_an_unwritable_folder_says_out_fixes_it(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the default name goes to the current folder; where that is read-only, the error named no way out
    import errno

    from pneumoscan import outputs

    def refuse(path: Path, write: object, **kwargs: object) -> Path:
        raise outputs.unwritable(path, OSError(errno.EACCES, "Permission denied"))

    monkeypatch.setattr(outputs, "atomic_write", refuse)
    monkeypatch.chdir(tmp_path)
    image = sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    assert main(["explain", str(image), "--model", str(tiny_run)]) == 2
    err = capsys.readouterr().err
    assert f"{image.stem}_heatmap.png: cannot be written (Permission denied)" in err and "give --out FILE.png" in err
    assert main(["explain", str(image), "--model", str(tiny_run), "--out", str(tmp_path / "h.png")]) == 2
    assert "--out" not in capsys.readouterr().err.split("cannot be written")[1]


def test_explain_without_out_in_a_read_only_folder_says_out_fixes_it_up_front(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A read-only current folder fails the check made before any work (`check_output` tries a file there), which
    said only 'check the folder and its permissions': the --out way out was given for the write alone."""
    import errno

    from pneumoscan import outputs

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", refuse)
    monkeypatch.chdir(tmp_path)
    image = sorted((tiny_data / "test" / "NORMAL").iterdir())[0]
    assert main(["explain", str(image), "--model", str(tiny_run)]) == 2
    assert capsys.readouterr().err == (
        f"pneumoscan: error: {image.stem}_heatmap.png: cannot be written (Read-only file system); check the folder "
        f"and its permissions (the heatmap's default place, the current folder); or give --out FILE.png in a folder "
        f"you can write to\n")


def test_explain_never_prints_a_p_short_of_certainty_as_1(tmp_path: Path, tiny_data: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A model sure of pneumonia (P = 0.99997) printed P(pneumonia)=1.0000; the figure, as the report, says 0.99997."""
    import torch

    from pneumoscan.artifact import ArtifactMeta, save_artifact
    from pneumoscan.models.registry import create_model

    model = create_model("cnn")
    with torch.no_grad():
        model.head[3].weight.zero_()
        model.head[3].bias.fill_(float(np.log(0.99997 / 0.00003)))
    path = save_artifact(tmp_path / "sure.safetensors", model,
                         ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.3, std=0.25))
    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    assert main(["explain", str(image), "--model", str(path), "--out", str(tmp_path / "h.png")]) == 0
    assert "P(pneumonia)=0.99997 " in capsys.readouterr().out


def test_explain_out_in_the_model_s_training_data_is_refused(tiny_run: Path, tiny_data: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """train, pretrain and set-threshold refuse an --out among the data's films; explain wrote its heatmap into
    the model's training data (DATA/train/NORMAL/h.png), where the next training took it for a NORMAL film."""
    image = sorted((tiny_data / "test" / "PNEUMONIA").iterdir())[0]
    out = tiny_data / "train" / "NORMAL" / "h.png"
    assert main(["explain", str(image), "--model", str(tiny_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: is inside the data folder {tiny_data}, where what is written would sit among its labelled " \
           f"films; give --out a file outside it, e.g. --out " in err and err.rstrip().endswith("/h.png"), err
    assert not out.exists()
