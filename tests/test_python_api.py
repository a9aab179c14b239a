"""The Python API (`pneumoscan.__all__`): imported lazily, the same checks and messages as the CLI, and the
results the commands give."""
from __future__ import annotations

import inspect
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import pneumoscan
from pneumoscan.cli import main
from pneumoscan.errors import InputError
from tests.conftest import sample_as_data, write_xray

SRC = Path(pneumoscan.__file__).resolve().parents[1]
ROOT = Path(__file__).resolve().parents[1]
METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "npv", "roc_auc", "pr_auc", "brier")


def this_line() -> int:
    """The number of the line that calls this."""
    return sys._getframe(1).f_lineno


def readme_section() -> str:
    """docs/python-api.md, the Python API's guide (README.md links it)."""
    return (ROOT / "docs" / "python-api.md").read_text()


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The names the section's Python example leaves, run in a folder where `sample/chest_xray` is laid out as the
    bundled sample, of its train films (`sample_as_data`): the example evaluates and predicts its test/."""
    (code,) = re.findall(r"```python\n(.*?)```", readme_section(), re.S)
    folder = tmp_path_factory.mktemp("notebook")
    sample_as_data(folder / "sample" / "chest_xray")
    namespace: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        exec(compile(code, "docs/python-api.md", "exec"), namespace)  # noqa: S102
        yield {**namespace, "folder": folder}


def test_the_readme_example_trains_evaluates_predicts_explains_and_exports(example: dict[str, Any]) -> None:
    assert set(example["splits"]) == {"train", "test"}
    run = example["run"]
    assert run.folder == Path("runs/notebook") and (example["folder"] / run.model).is_file()
    assert run.meta.image_size == 32 and 0.0 <= run.meta.threshold <= 1.0
    assert run.meta.training["data"]["train"]["NORMAL"] + run.meta.training["data"]["val"]["NORMAL"] == 50

    metrics = example["metrics"]
    assert metrics["split"] == "test" and metrics["n"] == 60 and metrics["n_positive"] == 30
    for key in METRICS:
        value, (lo, hi) = metrics[key]["value"], metrics[key]["ci95"]
        assert value is None or (0.0 <= value <= 1.0 and lo <= value <= hi), key
    assert 0.0 <= metrics["ece"]["value"] <= 1.0 and metrics["threshold"] == run.meta.threshold
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 60
    assert len(metrics["predictions"]) == 60
    (row,) = example["table"]
    assert row["run"] == "notebook" and row["n"] == 60 and row["roc_auc"] == metrics["roc_auc"]["value"]
    from matplotlib.figure import Figure
    assert all(isinstance(example[name], Figure) for name in ("curves", "matrix", "roc", "figure"))
    sensitive = example["sensitive"]
    assert sensitive.threshold <= run.meta.threshold and sensitive.target_recall == 0.99

    predictions = example["predictions"]
    assert len(predictions) == 60 and all(p.error is None for p in predictions)
    assert {p.label for p in predictions} <= set(pneumoscan.CLASS_NAMES)
    assert all(p.label == pneumoscan.CLASS_NAMES[p.probability >= p.threshold] for p in predictions)
    by_path = {Path(p.path): p.probability for p in predictions}
    probabilities = example["probabilities"]
    assert probabilities.shape == (8,)
    np.testing.assert_allclose(probabilities, [by_path[f] for f in example["films"]], rtol=0, atol=1e-6)
    assert example["upload"].probability == pytest.approx(probabilities[0], abs=1e-6)
    assert example["one"].probability == by_path[example["films"][0]]

    explanation = example["explanation"]
    assert explanation.heatmap.shape == (32, 32) and explanation.heatmap.dtype == np.float32
    assert 0.0 <= explanation.heatmap.min() and explanation.heatmap.max() <= 1.0
    assert explanation.prediction.label in pneumoscan.CLASS_NAMES
    assert explanation.prediction.probability == pytest.approx(probabilities[0], abs=1e-6)
    assert example["picture"].shape == (*explanation.image.shape, 3) == (224, 224, 3)

    exported = example["exported"]
    assert (example["folder"] / exported.path).is_file() and 0.0 <= exported.max_abs_diff <= 1e-4


def test_every_public_name_is_in_the_readme_table() -> None:
    """Each row of the section's table names public names in its first column, and every public name has one."""
    rows = [line.split("|")[1] for line in readme_section().splitlines() if line.startswith("| `")]
    documented = {name for cell in rows for name in re.findall(r"`(\w+)", cell)}
    assert documented == set(pneumoscan.__all__)


def test_import_loads_neither_torch_nor_numpy() -> None:
    code = ("import sys, pneumoscan; pneumoscan.CLASS_NAMES, pneumoscan.InputError, dir(pneumoscan); "
            "print(sorted({'torch', 'numpy'} & set(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(pneumoscan) if not name.startswith("_")
              and not type(getattr(pneumoscan, name)).__name__ == "module"}
    assert sorted(pneumoscan.__all__) == sorted(public)
    assert len(set(pneumoscan.__all__)) == len(pneumoscan.__all__)
    for name in pneumoscan.__all__:
        assert getattr(pneumoscan, name) is not None


def test_no_public_name_is_a_subpackage() -> None:
    """Importing `pneumoscan.X` sets the package's attribute X to that module, which would replace a function X."""
    submodules = {info.name for info in pkgutil.iter_modules(pneumoscan.__path__)}
    assert not submodules & set(pneumoscan.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'pneumoscan' has no attribute 'trian'"):
        pneumoscan.trian  # noqa: B018


def _cli_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line the CLI prints for `argv` (exit code 2)."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pneumoscan: error: ")]
    assert len(lines) == 1
    return lines[0].removeprefix("pneumoscan: error: ")


MISTAKES: dict[str, tuple[Callable[[Path, Path, Path], Any], list[str]]] = {
    "missing model": (lambda run, data, tmp: pneumoscan.evaluate(tmp / "nothing", data, n_boot=10),
                      ["evaluate", "--model", "{tmp}/nothing", "--data", "{data}", "--n-boot", "10"]),
    "n_boot 0": (lambda run, data, tmp: pneumoscan.evaluate(run, data, n_boot=0),
                 ["evaluate", "--model", "{run}", "--data", "{data}", "--n-boot", "0"]),
    "no data folder": (lambda run, data, tmp: pneumoscan.evaluate(run, tmp / "none", n_boot=10),
                       ["evaluate", "--model", "{run}", "--data", "{tmp}/none", "--n-boot", "10"]),
    "seed -1": (lambda run, data, tmp: pneumoscan.evaluate(run, data, seed=-1),
                ["evaluate", "--model", "{run}", "--data", "{data}", "--seed", "-1"]),
    "compare n_boot 0": (lambda run, data, tmp: pneumoscan.compare([run], data, n_boot=0),
                         ["compare", "{run}", "--data", "{data}", "--n-boot", "0", "--out", "{tmp}/new/c.html"]),
    "compare seed -1": (lambda run, data, tmp: pneumoscan.compare([run], seed=-1),
                        ["compare", "{run}", "--seed", "-1", "--out", "{tmp}/new/c.html"]),
    "compare split without data": (lambda run, data, tmp: pneumoscan.compare([run], split="train"),
                                   ["compare", "{run}", "--split", "train", "--out", "{tmp}/new/c.html"]),
    "threshold 2": (lambda run, data, tmp: pneumoscan.evaluate(run, data, threshold=2.0),
                    ["evaluate", "--model", "{run}", "--data", "{data}", "--threshold", "2"]),
    "predict missing model": (lambda run, data, tmp: pneumoscan.Predictor(tmp / "nothing"),
                              ["predict", "--model", "{tmp}/nothing", "{tmp}/x.png"]),
    "train without data": (lambda run, data, tmp: pneumoscan.train(None, tmp / "new"),
                           ["train", "--out", "{tmp}/new"]),
    "train epochs 0": (lambda run, data, tmp: pneumoscan.train(data, tmp / "new", epochs=0),
                       ["train", "--data", "{data}", "--out", "{tmp}/new", "--epochs", "0"]),
    "train unknown model": (lambda run, data, tmp: pneumoscan.train(data, tmp / "new", model="vgg99"),
                            ["train", "--data", "{data}", "--out", "{tmp}/new", "--model", "vgg99"]),
    "resume changed": (lambda run, data, tmp: pneumoscan.train(None, run, resume=True, seed=9),
                       ["train", "--out", "{run}", "--resume", "--seed", "9"]),
    "explain a non-image": (lambda run, data, tmp: pneumoscan.gradcam(tmp / "notes.txt", run),
                            ["explain", "{tmp}/notes.txt", "--model", "{run}", "--out", "{tmp}/heat.png"]),
    "export to a .txt": (lambda run, data, tmp: pneumoscan.export_onnx(run, tmp / "model.txt"),
                         ["export", "--model", "{run}", "--out", "{tmp}/model.txt"]),
}


# What the Python API says where the command names its flags (`resume=True` for `--resume`).
PYTHON_WORDS: dict[str, list[tuple[str, str]]] = {
    "missing model": [("pass --model RUN_DIR or a .safetensors file", "pass a run folder or a .safetensors file as `model`")],
    "predict missing model": [("pass --model RUN_DIR or a .safetensors file",
                               "pass a run folder or a .safetensors file as `model`")],
    "n_boot 0": [("--n-boot 0", "n_boot=0")],
    "seed -1": [("--seed -1", "seed=-1")],
    "compare n_boot 0": [("--n-boot 0", "n_boot=0")],
    "compare seed -1": [("--seed -1", "seed=-1")],
    "compare split without data": [("--split train", "split='train'"), ("--data DIR", "`data`"),
                                   ("without --data", "without `data`")],
    "threshold 2": [("--threshold 2.0", "threshold=2.0")],
    "train without data": [("--data DIR", "`data`")],
    "train epochs 0": [("--epochs 0", "epochs=0")],
    "train unknown model": [],
    "resume changed": [("--seed 9", "seed=9"), ("--epochs, --data and --cache-dir", "`epochs`, `data` and `cache_dir`"),
                       ("drop the option", "drop the argument"), ("another --out", "another `out`")],
    "export to a .txt": [("give --out", "give `out`")],
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_raises_input_error_with_the_clis_message_in_python_words(
        case: str, tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    call, argv = MISTAKES[case]
    (tmp_path / "notes.txt").write_text("not an image")
    write_xray(tmp_path / "x.png", 1, 0)
    shown = _cli_error([a.format(run=tiny_run, data=tiny_data, tmp=tmp_path) for a in argv], capsys)
    with pytest.raises(InputError) as err:
        call(tiny_run, tiny_data, tmp_path)
    for cli, python in PYTHON_WORDS.get(case, []):
        assert cli in shown
        shown = shown.replace(cli, python)
    assert str(err.value) == shown
    assert not re.search(r"(^|\s)--[a-z]", shown), shown  # no command-line flag in a notebook's message
    assert not (tmp_path / "new").exists()


def test_compare_of_a_set_threshold_copy_without_data_says_what_to_pass_in_python_words(
        tiny_site: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # it said "pass --data DIR ..., or --data DATA --split test", the command's words
    shown = _cli_error(["compare", str(tiny_site), "--out", str(tmp_path / "c.html")], capsys)
    assert f"pass --data DIR with labelled films it has not seen, or --data {tiny_data} --split test for" in shown
    with pytest.raises(InputError) as err:
        pneumoscan.compare([tiny_site])
    assert str(err.value) == shown.replace("pass --data DIR", "pass `data`").replace(
        f"--data {tiny_data} --split test", f"data={str(tiny_data)!r}, split='test'")


def test_evaluate_warns_of_file_name_keys_joining_folders_in_python_words(tiny_run: Path, tmp_path: Path) -> None:
    # the advice said "(read when the model was trained with --patient-key auto, the default)", the command's flag
    from pneumoscan.evaluation.evaluate import PatientKeyWarning

    for i in range(6):
        write_xray(tmp_path / "site" / "NORMAL" / f"pt{i}" / "frontal.png", 0, i)
        write_xray(tmp_path / "site" / "PNEUMONIA" / f"pt{i}" / "frontal.png", 1, 100 + i)
    with pytest.warns(PatientKeyWarning) as caught:
        pneumoscan.evaluate(tiny_run, tmp_path / "site", n_boot=20, progress=False)
    message = str(caught[0].message)
    assert message.endswith("(read when the model was trained with patient_key='auto', the default)")
    assert "--" not in message


def test_compare_warns_of_validation_films_not_found_in_python_words(tiny_run: Path, tmp_path: Path) -> None:
    # it said "... run it from the folder the run was trained in, or pass --data DIR", the command's words
    from pneumoscan.errors import MissingImagesWarning

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    csv = run / "val_predictions.csv"
    csv.write_text(csv.read_text().replace(str(tiny_run.parent), str(tmp_path / "moved")))
    with pytest.warns(MissingImagesWarning) as caught:
        pneumoscan.compare([run], progress=False)
    message = next(str(w.message) for w in caught if "are not found from here" in str(w.message))
    assert message.endswith("run it from the folder the run was trained in, or pass `data`")


@pytest.mark.parametrize("runs", [lambda: [], lambda: (), lambda: iter([]), lambda: (run for run in []),
                                  lambda: {}.keys()], ids=["list", "tuple", "iterator", "generator", "keys"])
def test_compare_of_no_runs_says_so_in_python_words(runs: Callable[[], Any]) -> None:
    # it said "compare needs at least one RUN_DIR", the command's placeholder (whose parser refuses no RUN_DIR itself);
    # an empty iterator or generator, which `if not runs` takes for runs, returned [] silently
    with pytest.raises(InputError, match=r"^compare needs at least one run folder in `runs`$"):
        pneumoscan.compare(runs())


def test_a_python_api_message_still_names_the_flags_on_the_command_line(tmp_path: Path, tiny_data: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A run that is there already: `resume=True` in a notebook cell run again, `--resume` for the command."""
    run = pneumoscan.train(tiny_data, tmp_path / "run", epochs=1, image_size=32, progress=False, verbose=False)
    with pytest.raises(InputError, match=r": holds an earlier run; pass resume=True to continue it or choose another "
                                         r"`out`$"):
        pneumoscan.train(tiny_data, run, epochs=1, image_size=32)
    assert _cli_error(["train", "--data", str(tiny_data), "--out", str(run.folder)], capsys).endswith(
        ": holds an earlier run; pass --resume to continue it or choose another --out")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pneumoscan.train(None, run, resume=True, epochs=2, progress=False, verbose=False)
    assert [str(w.message).split(" (run: ")[0] for w in caught] == ["epochs=2"]  # a warning too: not --epochs 2


# A wrong kind of argument for each function of the API: one line naming it, what it got and what it takes.
WRONG_TYPES: dict[str, tuple[Callable[[Path], Any], str]] = {
    "load_dataset": (lambda tmp: pneumoscan.load_dataset(3), "load_dataset: data takes a path (a str or os.PathLike), "
                                                             "not int 3"),
    "train data": (lambda tmp: pneumoscan.train(data=["a"], out=tmp / "new"),
                   "train: data takes a path (a str or os.PathLike) or None, not list ['a']"),
    "train option": (lambda tmp: pneumoscan.train(tmp, tmp / "new", epochs="2"),
                     "train: epochs takes an int or None, not str '2'"),
    "train switch": (lambda tmp: pneumoscan.train(tmp, tmp / "new", equalize="no"),
                     "train: equalize takes a bool or None, not str 'no'"),
    "evaluate model": (lambda tmp: pneumoscan.evaluate(model=3, data=tmp),
                       "evaluate: model takes a run folder or a model.safetensors (a str or os.PathLike), a Predictor, "
                       "or None for the shipped model, not int 3"),
    "evaluate n_boot": (lambda tmp: pneumoscan.evaluate(None, tmp, n_boot="10"),
                        "evaluate: n_boot takes an int, not str '10'"),
    "evaluate threshold": (lambda tmp: pneumoscan.evaluate(None, tmp, threshold=True),
                           "evaluate: threshold takes a number or None, not bool True"),
    "compare": (lambda tmp: pneumoscan.compare([tmp, 3]),
                "compare: runs takes a list of paths (str or os.PathLike), not list [PosixPath("),
    # an iterator's items were not checked (so as not to spend it): 3 ended in a TypeError from deep inside
    "compare iterator": (lambda tmp: pneumoscan.compare(iter([tmp, 3])),
                         "compare: runs takes a list of paths (str or os.PathLike), not list [PosixPath("),
    "plot_learning_curves": (lambda tmp: pneumoscan.plot_learning_curves(3),
                             "plot_learning_curves: run takes a path (a str or os.PathLike), not int 3"),
    "plot_confusion_matrix": (lambda tmp: pneumoscan.plot_confusion_matrix("x"),
                              "plot_confusion_matrix takes the dict evaluate(model, data) returns, not str"),
    "plot_roc": (lambda tmp: pneumoscan.plot_roc("x"), "plot_roc takes the dict evaluate(model, data) returns, not str"),
    "plot_roc labels": (lambda tmp: pneumoscan.plot_roc({}, labels="ab"),
                        "plot_roc: labels takes a list of str or None, not str 'ab'"),
    "gradcam": (lambda tmp: pneumoscan.gradcam(3), "gradcam: image takes a path (a str or os.PathLike), a file's bytes, a PIL "
                "image, a numpy array or a pydicom Dataset, not int 3"),
    "export_onnx": (lambda tmp: pneumoscan.export_onnx(None, tmp / "model.onnx", images=3),
                    "export_onnx: images takes a list of paths (str or os.PathLike) or None, not int 3"),
    "export_onnx images generator": (lambda tmp: pneumoscan.export_onnx(None, tmp / "model.onnx",
                                                                 images=(image for image in [3])),
                                     "export_onnx: images takes a list of paths (str or os.PathLike) or None, not "
                                     "list [3]"),
    # a PIL image was a TypeError 'source must be a path or bytes', size=64.0 Python's 'float' object cannot be
    # interpreted as an integer, from deep inside the decoder; size=True was taken as 1
    "load_image source": (lambda tmp: pneumoscan.load_image(np.zeros((4, 4), np.uint8), 64),
                          "load_image: source takes a path (a str or os.PathLike) or a file's bytes, not "
                          "numpy.ndarray array("),
    "load_image size": (lambda tmp: pneumoscan.load_image(tmp / "x.png", 64.0),
                        "load_image: size takes an int, not float 64.0"),
    "load_image size bool": (lambda tmp: pneumoscan.load_image(tmp / "x.png", True),
                             "load_image: size takes an int, not bool True"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_an_argument_of_the_wrong_kind_is_named_with_what_it_takes(case: str, tmp_path: Path) -> None:
    call, message = WRONG_TYPES[case]
    with pytest.raises(pneumoscan.InputError) as err:
        call(tmp_path)
    assert isinstance(err.value, TypeError)  # as Python's own, for code that catches those
    assert str(err.value).startswith(message), str(err.value)
    assert err.traceback[-1].path == Path(pneumoscan.api.__file__)  # at the call, not deep inside the work
    assert not (tmp_path / "new").exists()


def test_train_takes_numpy_bools_and_numbers_as_the_python_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """equalize=np.False_ was refused as 'not bool np.False_'; a numpy number was taken but written to config.json,
    which JSON cannot hold (TypeError: Object of type int64 is not JSON serializable)."""
    import pneumoscan.training.config as config

    given: dict[str, Any] = {}

    def capture(settings: dict[str, Any], **_: Any) -> None:
        given.update(settings)
        raise InterruptedError  # the run itself is not the point

    monkeypatch.setattr(config, "train_config", capture)
    with pytest.raises(InterruptedError):
        pneumoscan.train(tmp_path, tmp_path / "new", equalize=np.False_, tta=np.True_, epochs=np.int64(2),
                         lr=np.float32(0.5))
    plain = {"equalize": False, "tta": True, "epochs": 2, "lr": 0.5}
    assert {name: given[name] for name in plain} == plain
    assert all(type(given[name]) is type(value) for name, value in plain.items())


@pytest.mark.parametrize("given, message", [({"size": 0}, "size=0: must be at least 1"),
                                              ({"size": 64, "max_pixels": 0}, "max_pixels=0: must be at least 1")])
def test_load_image_names_a_size_below_one_as_python_takes_it(given: dict[str, int], message: str) -> None:
    """size=0 was a ValueError 'draft_size must be >= 1 or None, got 0', naming an argument load_image lacks."""
    film = Path(pneumoscan.__file__).parents[2] / "sample" / "chest_xray" / "train" / "NORMAL" / "IM-0240-0001.jpeg"
    with pytest.raises(InputError, match=f"^{message}$"):
        pneumoscan.load_image(film, **given)
    assert pneumoscan.load_image(film, 8).shape == (8, 8)


def test_a_missing_argument_is_pythons_own_error() -> None:
    with pytest.raises(TypeError, match=r"^evaluate\(\) missing 1 required positional argument: 'data'$"):
        pneumoscan.evaluate("run")  # type: ignore[call-arg]


def test_every_function_of_the_api_is_checked() -> None:
    functions = {name for name in pneumoscan.__all__ if inspect.isfunction(getattr(pneumoscan, name))
                 and getattr(pneumoscan, name).__module__ == "pneumoscan.api"} | {"load_image"}
    assert functions == {case.split()[0] for case in WRONG_TYPES}
    from pneumoscan.api import _OPTION_KINDS
    from pneumoscan.training.config import TrainConfig

    unchecked = {name: str(f.type) for name, f in TrainConfig.__dataclass_fields__.items()
                 if str(f.type).split(" |")[0] not in _OPTION_KINDS}
    assert unchecked == {}, "train's options of these types are not checked at the call: add their kind"


def test_an_unknown_training_option_lists_the_options(tmp_path: Path, tiny_data: Path) -> None:
    with pytest.raises(InputError, match=r"^train has no option 'epoch'; its options are: model, image_size, epochs,"):
        pneumoscan.train(tiny_data, tmp_path / "run", epoch=2)


def test_a_predictor_keeps_its_own_operating_point(tiny_run: Path, tiny_data: Path) -> None:
    predictor = pneumoscan.Predictor(tiny_run)
    with pytest.raises(InputError, match=r"^evaluate: a Predictor has its own threshold, prevalence; give them to "):
        pneumoscan.evaluate(predictor, tiny_data, threshold=0.3, prevalence=0.2)


def test_evaluate_returns_the_dict_evaluate_json_writes(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--n-boot", "50", "--seed", "3",
                 "--json", str(out)]) == 0
    capsys.readouterr()
    metrics = pneumoscan.evaluate(tiny_run, tiny_data, n_boot=50, seed=3)
    assert metrics == json.loads(out.read_text())
    assert metrics["split"] == "test" and metrics["n"] == 16
    # and the same from a loaded Predictor, whose default backend is the CLI's 'auto'
    predictor = pneumoscan.Predictor(tiny_run)
    assert pneumoscan.evaluate(predictor, tiny_data, n_boot=50, seed=3) == metrics


def test_a_predictor_gives_the_numbers_predict_prints(tiny_run: Path, tiny_data: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A notebook's Predictor(...) runs on the backend the commands' --backend auto picks, so its probabilities are
    those `pneumoscan predict` prints, to the last bit (PyTorch's differ from ONNX Runtime's by ~1e-7)."""
    pytest.importorskip("onnxruntime")
    from pneumoscan.inference.onnx_backend import resolve_backend

    films = sorted((tiny_data / "test").glob("*/*"))
    assert main(["predict", "--model", str(tiny_run), "--json", "--quiet", *map(str, films)]) in (0, 1)
    printed = {row["path"]: row["probability"] for row in json.loads(capsys.readouterr().out)}
    predictor = pneumoscan.Predictor(tiny_run)
    assert predictor.backend == resolve_backend("auto")
    assert {p.path: p.probability for p in predictor.predict_files(films)} == printed


def test_evaluate_decodes_into_the_cache_dir_given_as_the_command_does(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                       isolated_cache: Path) -> None:
    cache = tmp_path / "my_cache"
    metrics = pneumoscan.evaluate(tiny_run, tiny_data, n_boot=20, cache_dir=cache)
    assert any(path.is_file() for path in cache.rglob("*")) and not any(isolated_cache.iterdir())
    assert pneumoscan.evaluate(tiny_run, tiny_data, n_boot=20) == metrics  # None: the default cache
    assert any(isolated_cache.iterdir())


def test_train_takes_paths_and_resumes_a_finished_run(tiny_data: Path, tmp_path: Path) -> None:
    run = pneumoscan.train(tiny_data, tmp_path / "run", epochs=1, image_size=32, batch_size=16, progress=False)
    assert run.folder == tmp_path / "run" and run.model == run.folder / "model.safetensors"
    assert json.loads((run.folder / "config.json").read_text())["data"] == str(tiny_data)
    assert run.meta.image_size == 32 and 0.0 <= run.meta.threshold <= 1.0
    again = pneumoscan.train(None, run.folder, resume=True, progress=False)  # finished: its model, untouched
    assert again.model == run.model and again.meta == run.meta


def test_evaluate_warns_on_the_films_the_stored_threshold_was_chosen_on(tiny_site: Path, tiny_data: Path) -> None:
    site = tiny_site
    in_sample = "these are the films the threshold was chosen on"
    with pytest.warns(UserWarning, match=in_sample):
        pneumoscan.evaluate(site, tiny_data, n_boot=20)
    with pytest.warns(UserWarning, match=in_sample):
        pneumoscan.evaluate(pneumoscan.Predictor(site), tiny_data, n_boot=20)
    for model, options in ((site, {"threshold": 0.5}), (pneumoscan.Predictor(site, target_recall=0.9), {})):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pneumoscan.evaluate(model, tiny_data, n_boot=20, **options)  # not the stored threshold: nothing to say
        assert not [w for w in caught if in_sample in str(w.message)]


def test_evaluate_says_where_the_films_a_warning_names_are_listed_in_python_words(tiny_run: Path,
                                                                                  tiny_data: Path) -> None:
    with pytest.warns(UserWarning, match=r"films it has not seen \(the dict evaluate returns lists them under "
                                         r"seen_in_training\)") as caught:
        metrics = pneumoscan.evaluate(tiny_run, tiny_data, split="train", n_boot=20)
    assert metrics["seen_in_training"] and not any("--json" in str(w.message) for w in caught)


def test_evaluate_warns_about_the_unreadable_films_it_left_out(tiny_run: Path, tiny_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for label in pneumoscan.CLASS_NAMES:
        for k, film in enumerate(sorted((tiny_data / "test" / label).iterdir())[:4]):
            write_xray(data / label / film.name, pneumoscan.CLASS_NAMES.index(label), 500 + k)
    (data / "NORMAL" / "broken.jpeg").write_text("not an image")
    with pytest.warns(UserWarning, match=r"1 unreadable image left out: .*broken.jpeg: not a readable image") \
            as caught:
        metrics, line = pneumoscan.evaluate(tiny_run, data, n_boot=20), this_line()
    assert metrics["n"] == 8 and len(metrics["skipped"]) == 1
    assert {(w.filename, w.lineno) for w in caught} == {(__file__, line)}  # the caller's line, as a notebook shows


def test_gradcam_raises_refused_film_an_input_error_with_the_clis_message(fitted: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI tells a film the guard refuses (exit 1, as predict) from a mistake (exit 2) by this subclass."""
    from tests.conftest import colour_photo

    photo = tmp_path / "photo.png"
    photo.write_bytes(colour_photo())
    assert main(["explain", str(photo), "--model", str(fitted), "--out", str(tmp_path / "h.png")]) == 1
    shown = capsys.readouterr().err.strip().removeprefix("pneumoscan: error: ")
    with pytest.raises(pneumoscan.RefusedFilm) as refused:
        pneumoscan.gradcam(photo, fitted)
    assert isinstance(refused.value, InputError) and str(refused.value) == shown


def test_train_verbose_false_prints_nothing(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A notebook cell can train in silence (Keras' verbose=0); the epoch lines are in history.csv all the same."""
    pneumoscan.train(tiny_data, tmp_path / "loud", epochs=1, image_size=32, progress=False)
    assert "epoch   1  loss" in capsys.readouterr().out
    run = pneumoscan.train(tiny_data, tmp_path / "quiet", epochs=1, image_size=32, progress=False, verbose=False)
    assert capsys.readouterr() == ("", "")
    assert (run.folder / "history.csv").read_text().count("\n") == 2
    pneumoscan.train(None, run.folder, resume=True, verbose=False)  # finished: says so only when verbose
    assert capsys.readouterr() == ("", "")


def test_evaluate_progress_false_shows_no_bars(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("pneumoscan.progress.stderr_is_terminal", lambda: True)
    pneumoscan.evaluate(tiny_run, tiny_data, n_boot=20, cache_dir=tmp_path / "a")
    assert "decoding test" in capsys.readouterr().err
    pneumoscan.evaluate(tiny_run, tiny_data, n_boot=20, cache_dir=tmp_path / "b", progress=False)
    assert capsys.readouterr().err == ""


def test_evaluate_predictions_are_the_rows_evaluate_predictions_writes(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import csv

    out = tmp_path / "films.csv"
    assert main(["evaluate", "--model", str(tiny_run), "--data", str(tiny_data), "--n-boot", "20",
                 "--predictions", str(out)]) == 0
    capsys.readouterr()
    with out.open(newline="") as handle:
        written = [{"path": r["path"], "label": int(r["label"]), "prob": float(r["prob"]), "cause": r["cause"] or None}
                   for r in csv.DictReader(handle)]
    metrics = pneumoscan.evaluate(tiny_run, tiny_data, n_boot=20, predictions=True)
    assert len(written) == 16 and metrics.pop("predictions") == written
    assert metrics == pneumoscan.evaluate(tiny_run, tiny_data, n_boot=20)  # the rest: the dict --json writes


def test_compare_returns_the_table_compare_writes(tiny_run: Path, tiny_data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    other = pneumoscan.train(tiny_data, tmp_path / "cnn", model="cnn", epochs=1, image_size=32, progress=False,
                             verbose=False)
    for data in (None, tiny_data):  # each run's validation predictions, then the test split of DATA
        out = tmp_path / f"compare_{data is None}.html"
        assert main(["compare", str(tiny_run), str(other.folder), "--out", str(out), "--n-boot", "50",
                     *([] if data is None else ["--data", str(data)])]) == 0
        capsys.readouterr()
        rows = pneumoscan.compare([tiny_run, other], data, n_boot=50)  # a TrainedRun is its folder
        assert rows == json.loads(out.with_suffix(".json").read_text())
    assert [row["model"] for row in rows] == ["resnet10", "cnn"] and [row["n"] for row in rows] == [16, 16]


def test_compare_of_one_run_not_in_a_list_says_to_list_it(tiny_run: Path) -> None:
    """A str is a sequence of one-letter runs: compare('runs/a') said 'r: not a run folder'."""
    for run in (str(tiny_run), tiny_run):
        with pytest.raises(InputError, match=rf"^compare takes a list of run folders, not one; "
                                             rf"compare\(\[{re.escape(repr(str(tiny_run)))}\]\), with more runs"):
            pneumoscan.compare(run)  # type: ignore[arg-type]


def test_the_plots_draw_the_runs_history_and_the_evaluations_figures(tiny_run: Path, tiny_data: Path) -> None:
    import csv

    from matplotlib.figure import Figure

    from pneumoscan.evaluation.metrics import roc_curve

    curves = pneumoscan.plot_learning_curves(tiny_run)
    with (tiny_run / "history.csv").open(newline="") as handle:
        history = list(csv.DictReader(handle))
    assert isinstance(curves, Figure)
    assert list(curves.axes[1].lines[0].get_ydata()) == [float(row["val_auc"]) for row in history]

    metrics = pneumoscan.evaluate(tiny_run, tiny_data, n_boot=20, predictions=True)
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]["matrix"]
    shown = [text.get_text().split("\n")[:2] for text in pneumoscan.plot_confusion_matrix(metrics).axes[0].texts]
    assert shown == [["TN", str(tn)], ["FP", str(fp)], ["FN", str(fn)], ["TP", str(tp)]]

    roc = pneumoscan.plot_roc(metrics, metrics, labels=["first", "second"])
    fpr, tpr, _ = roc_curve([r["label"] for r in metrics["predictions"]], [r["prob"] for r in metrics["predictions"]])
    drawn = [line for line in roc.axes[0].lines if line.get_label().startswith("first: AUC ")]
    assert len(drawn) == 1 and np.array_equal(drawn[0].get_xdata(), fpr) and np.array_equal(drawn[0].get_ydata(), tpr)
    assert [t.get_text().split(":")[0] for t in roc.axes[0].get_legend().get_texts()] == ["chance", "first", "second"]
    default = pneumoscan.plot_roc(metrics).axes[0].get_legend().get_texts()[1].get_text()
    assert default.startswith(f"{tiny_run.name}: AUC ")


def test_a_notebook_shows_the_figures_as_pictures_without_pyplot(tiny_run: Path) -> None:
    """IPython displays an object by its _repr_png_: a plain Figure has none until pyplot's inline backend starts,
    so a cell ending in plot_learning_curves(run) showed '<Figure size 1200x440 with 3 Axes>'."""
    import io
    import pickle

    from PIL import Image

    from pneumoscan.report.figures import DPI

    figure = pneumoscan.plot_learning_curves(tiny_run)
    with Image.open(io.BytesIO(figure._repr_png_())) as picture:
        assert picture.format == "PNG"
        assert picture.size == tuple(round(inches * DPI) for inches in figure.get_size_inches())
    assert len(pickle.loads(pickle.dumps(figure)).axes) == len(figure.axes)  # still a Figure as any other


PLOT_MISTAKES: dict[str, tuple[Callable[[dict[str, Any], Path], Any], str]] = {
    "roc without predictions": (lambda m, site: pneumoscan.plot_roc({k: v for k, v in m.items() if k != "predictions"}),
                                r"^plot_roc needs each film's probability: evaluate\(model, data, predictions=True\)$"),
    "roc of nothing": (lambda m, site: pneumoscan.plot_roc(),
                       r"^plot_roc needs at least one dict of evaluate\(model, data, predictions=True\)$"),
    "roc labels": (lambda m, site: pneumoscan.plot_roc(m, labels=["a", "b"]),
                   r"^plot_roc: 2 labels for 1 evaluations; give one label each$"),
    # a generator of labels ended in "object of type 'generator' has no len()"
    "roc labels of a generator": (lambda m, site: pneumoscan.plot_roc(m, labels=(label for label in "ab")),
                                  r"^plot_roc: 2 labels for 1 evaluations; give one label each$"),
    "matrix of a path": (lambda m, site: pneumoscan.plot_confusion_matrix(site),
                         r"^plot_confusion_matrix takes the dict evaluate\(model, data\) returns, not PosixPath$"),
    "curves of a model without its run": (lambda m, site: pneumoscan.plot_learning_curves(site),
                                          r"site: no history.csv in this run folder, so no learning curves"),
}


@pytest.mark.parametrize("case", list(PLOT_MISTAKES))
def test_a_plot_of_the_wrong_thing_says_what_it_takes(case: str, tiny_run: Path, tiny_data: Path,
                                                      tiny_site: Path) -> None:
    call, message = PLOT_MISTAKES[case]
    metrics = pneumoscan.evaluate(tiny_run, tiny_data, n_boot=20, predictions=True)
    with pytest.raises(InputError, match=message):
        call(metrics, tiny_site)


def test_a_trained_run_shows_briefly_and_stands_for_its_folder(tiny_data: Path, tmp_path: Path) -> None:
    run = pneumoscan.train(tiny_data, tmp_path / "run", epochs=1, image_size=32, progress=False, verbose=False)
    assert repr(run) == f"TrainedRun(folder={run.folder!r}, model={run.model!r})"  # not pages of metadata
    assert os.fspath(run) == str(run.folder)
    assert pneumoscan.Predictor(run).path == run.model


def test_a_predictor_shows_its_model_backend_and_operating_point(tiny_run: Path) -> None:
    predictor = pneumoscan.Predictor(tiny_run, backend="torch", target_recall=0.9, prevalence=0.3, guard=False)
    assert repr(predictor) == (f"Predictor(path={predictor.path!r}, model_name='resnet10', size=32, backend='torch', "
                               f"threshold={predictor.threshold!r}, threshold_from='target_recall', target_recall=0.9, "
                               f"prevalence=0.3, guard=False)")  # not <... object at 0x7f...>
    assert "threshold_ci95" not in predictor.__dict__  # its bootstrap is not run to show it


def test_train_warns_as_python_warnings_what_the_command_prints(tiny_data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for label in pneumoscan.CLASS_NAMES:
        for film in sorted((tiny_data / "train" / label).iterdir()):
            (data / "train" / label).mkdir(parents=True, exist_ok=True)
            (data / "train" / label / film.name).write_bytes(film.read_bytes())
    (data / "train" / "NORMAL" / "broken.png").write_text("not an image")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "cli"), "--epochs", "1", "--image-size", "32",
                 "--quiet"]) == 0
    printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pneumoscan: warning: ")]
    assert any("broken.png" in line for line in printed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pneumoscan.train(data, tmp_path / "api", epochs=1, image_size=32, progress=False, verbose=False)
    assert capsys.readouterr() == ("", "")
    assert [f"pneumoscan: warning: {w.message}" for w in caught if w.category is UserWarning] == printed
    assert {w.filename for w in caught if w.category is UserWarning} == {__file__}  # this call, not the trainer's


def test_train_makes_the_model_the_command_makes(tiny_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Same data, recipe and seed: the same weights, threshold and validation figures as `pneumoscan train`."""
    from safetensors.numpy import load_file

    from pneumoscan.artifact import read_meta

    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "cli"), "--model", "cnn", "--epochs", "2",
                 "--image-size", "32", "--seed", "3", "--quiet"]) == 0
    capsys.readouterr()
    run = pneumoscan.train(tiny_data, tmp_path / "api", model="cnn", epochs=2, image_size=32, seed=3, verbose=False)
    cli, api = load_file(tmp_path / "cli" / "model.safetensors"), load_file(run.model)
    assert cli.keys() == api.keys() and all(np.array_equal(cli[k], api[k]) for k in cli)
    made = read_meta(tmp_path / "cli" / "model.safetensors")
    assert (run.meta.threshold, run.meta.val_metrics, run.meta.val_scores) == (made.threshold, made.val_metrics,
                                                                              made.val_scores)
