"""Models from other packages (entry point group `pneumoscan.models`): tiny plugin distributions written in tmp_path
(a module and a `*.dist-info` folder) that importlib.metadata finds through PYTHONPATH, used in subprocesses so this
process's registry stays as it is; nothing is installed. Models registered from Python are tested in this process,
on a copy of the registry (`own_registry`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import traceback
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

import pneumoscan
from pneumoscan.artifact import ArtifactMeta, header_problem, load_artifact, read_meta, save_artifact
from pneumoscan.errors import InputError
from pneumoscan.models import registry
from pneumoscan.models.registry import (ModelOrigin, check_model_output, create_model, model_config, model_sources,
                                        register_model)
from tests.conftest import interrupt_import, write_xray

SRC = Path(pneumoscan.__file__).resolve().parents[1]  # this checkout's code, first on the subprocesses' path

TINYNET = '''
import torch
from torch import nn
from pneumoscan.models.registry import register_model


class TinyNet(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3))).squeeze(1)


@register_model("tinynet", description="two convolutions and a linear layer", image_size=32)
def tinynet(width: int = 4) -> nn.Module:
    return TinyNet(width)
'''

# what a subprocess runs: CLI commands in one process, their exit code, stdout and stderr printed as JSON
RUNNER = '''
import contextlib, io, json, sys
from pneumoscan.cli import main


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return [code, out.getvalue(), err.getvalue()]
'''


def write_distribution(root: Path, name: str, version: str, modules: dict[str, str],
                       entry_points: dict[str, str]) -> Path:
    """A distribution as pip would leave it in site-packages: its modules and NAME-VERSION.dist-info with METADATA
    and entry_points.txt (group pneumoscan.models)."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[pneumoscan.models]\n" + "".join(f"{key} = {value}\n" for key, value in entry_points.items()))
    return root


def run_python(script: str, path: Path, *args: str) -> dict:
    """The JSON the script prints last, run in a fresh interpreter with `path` (its plugins) on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(path)]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", RUNNER + textwrap.dedent(script), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A run of the acme-models plugin's tinynet, trained for one epoch on 28 tiny films in a subprocess where the
    plugin is installed, and what predict, export, explain, fit-guard, the service and an ensemble with a second run
    (RUN-ensemble) did with it there."""
    base = tmp_path_factory.mktemp("plugin")
    plugins = write_distribution(base / "site", "acme-models", "0.1", {"acme_models": TINYNET},
                                 {"acme": "acme_models"})
    for i in range(14):
        write_xray(base / "data" / "train" / "NORMAL" / f"IM-{i:04d}-0001.png", 0, i, size=32)
        write_xray(base / "data" / "train" / "PNEUMONIA" / f"person{i}_bacteria_{i}.png", 1, 100 + i, size=32)
    script = '''
        import acme_models  # first, as a notebook may: its models still count as the package's
        data, run_dir, film, heatmap = sys.argv[1:]
        results = {"models": run("models"),
                   "train": run("train", "--data", data, "--out", run_dir, "--model", "tinynet", "--epochs", "1",
                                "--batch-size", "8", "--val-fraction", "0.3", "--quiet"),
                   "predict": run("predict", "--model", run_dir, "--json", film),
                   "export": run("export", "--model", run_dir, "--out", run_dir + "/model.onnx", "--images", film),
                   "explain": run("explain", "--model", run_dir, "--out", heatmap, film),
                   "fit-guard": run("fit-guard", "--model", run_dir, "--data", data),
                   "train-seed-1": run("train", "--data", data, "--out", run_dir + "-seed1", "--model", "tinynet",
                                       "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.3", "--seed", "1",
                                       "--quiet")}
        results["ensemble"] = run("ensemble", run_dir, run_dir + "-seed1", "--out", run_dir + "-ensemble", "--quiet")
        from fastapi.testclient import TestClient
        from pneumoscan.service.app import create_app
        from pneumoscan.service.settings import Settings
        with TestClient(create_app(Settings(model=run_dir))) as client:
            with open(film, "rb") as handle:
                answer = client.post("/predict?explain=true", files={"file": ("film.png", handle.read(), "image/png")})
        results["serve"] = [answer.status_code, answer.json()]
        print(json.dumps(results))
    '''
    run = base / "run"
    film = base / "data" / "train" / "PNEUMONIA" / "person0_bacteria_0.png"
    results = run_python(script, plugins, str(base / "data"), str(run), str(film), str(base / "heatmap.png"))
    return run, results


def test_a_plugin_model_is_listed_with_its_package(plugin_run: tuple[Path, dict]) -> None:
    code, out, err = plugin_run[1]["models"]
    assert code == 0 and not err, err
    row = next(line for line in out.splitlines() if line.startswith("tinynet "))
    assert row.split()[1:4] == ["193", "32", "acme-models"] and "0.1  two convolutions" in row, out
    assert next(line for line in out.splitlines() if line.startswith("cnn ")).split()[3] == "pneumoscan"
    assert "a built-in name cannot be replaced" in out


def test_a_plugin_model_trains_predicts_exports_explains_guards_and_serves(plugin_run: tuple[Path, dict]) -> None:
    run, results = plugin_run
    for command in ("train", "predict", "export", "explain", "fit-guard", "train-seed-1", "ensemble"):
        code, _, err = results[command]
        assert code == 0 and "Traceback" not in err, (command, err)
    assert json.loads(results["predict"][1])[0]["in_distribution"] is None  # predicted before the guard was fitted
    assert "max |P(onnx) - P(torch)|" in results["export"][1]
    assert (run.parent / "heatmap.png").stat().st_size > 0 and (run / "model.ood.safetensors").is_file()
    status, body = results["serve"]
    assert status == 200 and 0 <= body["probability"] <= 1 and body["in_distribution"] is not None, body
    assert "heatmap_png_base64" in body, body


def test_the_artifact_records_the_package_its_model_comes_from(plugin_run: tuple[Path, dict]) -> None:
    from pneumoscan.artifact import read_meta

    meta = read_meta(plugin_run[0] / "model.safetensors")
    assert meta.model_name == "tinynet"
    assert meta.model_sources == {"tinynet": {"distribution": "acme-models", "version": "0.1", "entry_point": "acme",
                                              "module": "acme_models"}}
    ensemble = read_meta(plugin_run[0].with_name("run-ensemble") / "model.safetensors")
    assert ensemble.model_name == "ensemble" and ensemble.model_sources == meta.model_sources


def test_broken_plugins_warn_once_by_name_and_a_missing_one_is_named_on_loading(
        plugin_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Without acme-models, but with a plugin that fails to import and one whose entry point registers a built-in
    name (after another name, which goes with it): the other plugin's model still works, and loading the tinynet run
    says which package to install."""
    site = write_distribution(tmp_path / "site", "broken-models", "1.0",
                              {"broken_models": "import not_installed_anywhere\n"}, {"broken": "broken_models"})
    write_distribution(site, "clash-models", "2.0", {"clash_models": '''
        from torch import nn
        from pneumoscan.models.registry import register_model


        def wide() -> nn.Module:
            return nn.Sequential(nn.Flatten(), nn.LazyLinear(1), nn.Flatten(0))


        def register() -> None:
            register_model("halfnet", description="registered before the clash", image_size=32)(wide)
            register_model("cnn", description="a second cnn", image_size=32)(wide)
            ''', "extra_models": '''
        from torch import nn
        from pneumoscan.models.registry import register_model


        @register_model("widenet", description="a linear model", image_size=32)
        def widenet() -> nn.Module:
            return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 1), nn.Flatten(0))
            '''}, {"clash": "clash_models:register", "extra": "extra_models"})
    run = plugin_run[0]
    film = run.parent / "data" / "train" / "NORMAL" / "IM-0000-0001.png"
    results = run_python('''
        from pneumoscan.models.registry import get_spec, list_models
        twice = [run("predict", "--model", sys.argv[1], sys.argv[2]) for _ in range(2)]
        ensemble = run("predict", "--model", sys.argv[1] + "-ensemble", sys.argv[2])
        print(json.dumps({"predict": twice, "ensemble": ensemble, "models": list_models(), "widenet": get_spec("widenet").origin.describe(),
                          "cnn": type(__import__("pneumoscan").create_model("cnn")).__name__}))
    ''', site, str(run), str(film))
    assert "widenet" in results["models"] and "halfnet" not in results["models"], results["models"]
    assert results["widenet"] == "clash-models 2.0" and results["cnn"] == "SmallCNN"
    missing = (f"pneumoscan: error: {run / 'model.safetensors'}: model 'tinynet' comes from the plugin package "
               f"acme-models 0.1 (module acme_models), which is not installed here; install it (pip install "
               f"'acme-models==0.1') and run the command again")
    (code, out, err), again = results["predict"]
    assert code == 2 and not out and "Traceback" not in err, err
    assert err.splitlines()[0] == ("pneumoscan: warning: model plugin 'broken' (broken_models) of broken-models was "
                                   "not loaded, so its models are unavailable: ModuleNotFoundError: No module named "
                                   "'not_installed_anywhere'"), err
    assert err.splitlines()[1] == ("pneumoscan: warning: model plugin 'clash' (clash_models:register) of clash-models "
                                   "was not loaded, so its models are unavailable: ValueError: model 'cnn' is built "
                                   "into pneumoscan and cannot be replaced; register yours under another name"), err
    assert err.splitlines()[2:] == [missing]
    assert again == [2, "", missing + "\n"]  # the plugins are loaded, and warned about, once
    ensemble = run.with_name("run-ensemble") / "model.safetensors"
    assert results["ensemble"] == [2, "", missing.replace(str(run / "model.safetensors"), str(ensemble)) + "\n"]


# -- in this process: models registered from Python, with the registry restored after each test --------------------
class FlatNet(nn.Module):
    """Neither a convolution nor an nn.Linear: a learned scale of the mean pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3)) * self.scale


def sized(size: int) -> nn.Module:
    """A builder without a default for its option."""
    return FlatNet()


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A copy of the registry for the test to register in (the models loaded first, so none loads into the copy)."""
    registry.list_models()
    copy = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", copy)
    return copy


def test_a_built_in_name_is_refused_and_a_name_is_kept_by_its_builder(own_registry: dict) -> None:
    with pytest.raises(ValueError, match="model 'resnet10' is built into pneumoscan and cannot be replaced"):
        register_model("resnet10", description="mine", image_size=32)(FlatNet)
    register_model("flatnet", description="mine", image_size=32)(FlatNet)
    register_model("flatnet", description="a notebook cell run again", image_size=48)(FlatNet)  # replaces it
    assert registry.get_spec("flatnet").image_size == 48
    with pytest.raises(ValueError, match=r"model 'flatnet' is registered twice \(first by module tests\.models"):
        register_model("flatnet", description="another builder", image_size=32)(nn.Identity)


def test_a_model_registered_in_python_is_named_by_its_module_where_it_is_missing(own_registry: dict,
                                                                                  tmp_path: Path) -> None:
    register_model("flatnet", description="mine", image_size=32)(FlatNet)
    assert model_sources(["cnn", "flatnet"]) == {"flatnet": {"module": __name__}}
    path = save_artifact(tmp_path / "model.safetensors", create_model("flatnet"),
                         ArtifactMeta(model_name="flatnet", model_config={}, image_size=32, mean=0.5, std=0.25,
                                      model_sources=model_sources(["flatnet"])))
    assert isinstance(load_artifact(path, "cpu")[0], FlatNet)
    del own_registry["flatnet"]
    with pytest.raises(InputError, match=f"model 'flatnet' was registered by the Python module {__name__}, not by an "
                                         f"installed package; in Python, import or run that module"):
        load_artifact(path, "cpu")


def test_a_model_registered_in_a_notebook_is_named_so_where_it_is_missing() -> None:
    from pneumoscan.models.registry import missing_model_message

    assert missing_model_message("mynet", {"module": "__main__"}) == (
        "model 'mynet' was registered in a notebook or script (__main__), not by an installed package; in Python, "
        "import or run that code before loading the model, or package it as a plugin (`pneumoscan docs training`: "
        "Your own architecture)")


def test_models_lists_where_each_model_comes_from_and_one_it_cannot_build(
        own_registry: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.cli import main

    register_model("flatnet", description="mine", image_size=32)(FlatNet)
    register_model("sizednet", description="needs its size", image_size=32)(sized)
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert rows["flatnet"][1:6] == ["1", "32", "module", __name__, "mine"], out
    assert rows["sizednet"][1:3] == ["?", "32"] and rows["resnet10"][3] == "pneumoscan", out
    assert err == ("pneumoscan: warning: model 'sizednet' cannot be built with its default options (TypeError: "
                   "sized() missing 1 required positional argument: 'size')\n"), err


def test_models_shows_a_plugins_own_bug_as_its_builders_error(own_registry: dict,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # 'option image_size=96: refused by its builder (bug ...)': the size `models` builds at, never set by the user,
    # was blamed for a bug the builder has at every size
    from pneumoscan.cli import main

    def buggy(image_size: int = 64, width: int = 8) -> nn.Module:
        raise RuntimeError("bug inside the plugin's builder")

    register_model("buggy", description="mine", image_size=96)(buggy)
    assert main(["models"]) == 0
    assert capsys.readouterr().err == ("pneumoscan: warning: model 'buggy' cannot be built with its default options "
                                       "(RuntimeError: bug inside the plugin's builder)\n")


def test_models_counts_the_parameters_at_the_size_it_lists(own_registry: dict,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # a builder whose image_size default is not its registered size was counted at the default: 65 weights for a
    # model `train` builds with 1,025 (32 x 32 + 1), on the row that lists its size as 32
    from pneumoscan.cli import main

    def pixels(image_size: int = 8) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(image_size * image_size, 1), nn.Flatten(0))

    register_model("pixelnet", description="one weight a pixel", image_size=32)(pixels)
    assert main(["models"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["pixelnet"][1:3] == ["1,025", "32"], rows["pixelnet"]
    assert rows["mlp"][1:3] == ["1,065,985", "64"]  # (64 x 64 x 256 + ...): the built-ins' defaults are their sizes


def test_weights_from_another_plugin_version_are_refused_naming_both(own_registry: dict, tmp_path: Path) -> None:
    register_model("flatnet", description="mine", image_size=32)(FlatNet)
    own_registry["flatnet"] = replace(own_registry["flatnet"], origin=ModelOrigin("acme_models", "acme-models", "0.2"))
    trained = {"flatnet": {"distribution": "acme-models", "version": "0.1", "module": "acme_models"}}
    path = save_artifact(tmp_path / "model.safetensors", nn.Linear(2, 1),  # weights of another architecture
                         ArtifactMeta(model_name="flatnet", model_config={}, image_size=32, mean=0.5, std=0.25,
                                      model_sources=trained))
    with pytest.raises(InputError, match=r"weights do not fit its stored config \(.*\), as model 'flatnet' was trained "
                                         r"with acme-models 0\.1 and acme-models 0\.2 is installed here; install "
                                         r"acme-models==0\.1 to load it"):
        load_artifact(path, "cpu")


def test_a_model_without_convolution_or_linear_layer_is_refused_by_what_it_lacks(own_registry: dict,
                                                                                 tmp_path: Path) -> None:
    from pneumoscan.explain.gradcam import NoCamLayer, cam_layers
    from pneumoscan.export.onnx import ExportError, export_onnx_bytes
    from pneumoscan.inference.ood import final_linear
    from pneumoscan.inference.predictor import Predictor

    register_model("flatnet", description="mine", image_size=32)(FlatNet)
    meta = ArtifactMeta(model_name="flatnet", model_config={}, image_size=32, mean=0.5, std=0.25,
                        model_sources=model_sources(["flatnet"]))
    model = create_model("flatnet")
    with pytest.raises(NoCamLayer, match="model 'flatnet' has no convolutional layer, so Grad-CAM cannot explain it"):
        cam_layers(model, meta)
    with pytest.raises(InputError, match="FlatNet has no nn.Linear layer, whose input is the feature vector that the "
                                         "out-of-distribution guard, ONNX export"):
        final_linear(model)
    with pytest.raises(ExportError, match="model 'flatnet' cannot be exported to ONNX: FlatNet has no nn.Linear"):
        export_onnx_bytes(model, meta)
    path = save_artifact(tmp_path / "model.safetensors", model, meta)
    with pytest.warns(UserWarning, match="cannot be exported to ONNX: FlatNet has no nn.Linear layer.*; predicting "
                                         "with PyTorch instead"):
        predictor = Predictor(path)
    assert predictor.backend == "torch"


def test_grad_cam_of_a_model_without_convolution_names_the_registered_models_with_one(own_registry: dict) -> None:
    # it named "a cnn, resnet10 or resnet18 model", a list written by hand: not tv_resnet18/50, nor a plugin's
    from pneumoscan.explain.gradcam import NoCamLayer, cam_layers

    register_model("flatnet", description="mine", image_size=32)(FlatNet)
    register_model("convnet", description="a convolution", image_size=32)(
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(1), nn.Flatten(0)))
    meta = ArtifactMeta(model_name="mlp", model_config={"image_size": 32}, image_size=32, mean=0.5, std=0.25)
    with pytest.raises(NoCamLayer) as err:
        cam_layers(create_model("mlp", image_size=32), meta)
    assert str(err.value) == ("model 'mlp' has no convolutional layer, so Grad-CAM cannot explain it; use a model that "
                              "has: cnn, resnet10, resnet18, tv_resnet18, tv_resnet50; plugins' models (not checked): "
                              "convnet, flatnet (`pneumoscan models` describes them)"), err.value


def test_the_models_grad_cam_names_are_found_only_when_shown_and_no_plugin_is_built(
        own_registry: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    # every registered model was built to word the refusal, which a report then threw away (1.3 s), and a plugin's
    # builder that loads its weights by default could try to download them
    import pneumoscan.models.registry as registry
    from pneumoscan.explain.gradcam import NoCamLayer, cam_layers

    built: list[str] = []

    def downloads() -> nn.Module:
        built.append("downloads")
        raise AssertionError("a plugin's builder ran")

    register_model("downloads", description="loads its weights", image_size=32)(downloads)
    meta = ArtifactMeta(model_name="mlp", model_config={"image_size": 32}, image_size=32, mean=0.5, std=0.25)
    real = registry.create_model
    monkeypatch.setattr(registry, "create_model", lambda name, **cfg: built.append(name) or real(name, **cfg))
    from pneumoscan.report.cases import overlay_layers

    assert overlay_layers(real("mlp", image_size=32), meta) == (
        None, "no Grad-CAM overlay: model 'mlp' has no convolutional layer, so Grad-CAM cannot explain it")
    with pytest.raises(NoCamLayer) as err:
        cam_layers(real("mlp", image_size=32), meta)
    assert built == [] and err.value.reason == "model 'mlp' has no convolutional layer, so Grad-CAM cannot explain it"
    assert "plugins' models (not checked): downloads (" in str(err.value) and "downloads" not in built
    assert "cnn" in built


def test_a_plugins_own_default_is_taken_whatever_its_annotation(own_registry: dict) -> None:
    # `width: int = None` is common: its default, which `model_config` records for the run, must build again
    def loose(width: int = None, scale: float = 1.0) -> nn.Module:  # type: ignore[assignment]
        return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, width or 1), nn.Flatten(0))

    register_model("loosenet", description="loose", image_size=32)(loose)
    assert create_model("loosenet", **model_config("loosenet")).get_submodule("1").out_features == 1
    with pytest.raises(InputError, match=r"^model 'loosenet': option scale takes a number, not '2'$"):
        create_model("loosenet", scale="2")


def test_train_ends_saying_no_guard_can_be_fitted_to_a_model_without_a_linear_layer(
        own_registry: dict, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # train ended with "next: `pneumoscan fit-guard ...` fits its chest X-ray guard", which then refused the model
    from pneumoscan.cli import main

    register_model("flatnet", description="mine", image_size=16)(FlatNet)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--model", "flatnet", "--epochs", "1",
                 "--quiet"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == ("note: no chest X-ray guard can be fitted to this model (FlatNet has no nn.Linear layer, whose "
                    "input is the feature vector that the out-of-distribution guard, ONNX export, pretraining and "
                    "ensembles take; end the model with an nn.Linear classifier), so predict and serve score any "
                    "image, a photo too, instead of refusing it"), last
    assert main(["fit-guard", "--model", str(run), "--data", str(tiny_dataset)]) == 2  # as the note says
    assert "FlatNet has no nn.Linear layer" in capsys.readouterr().err


def test_set_threshold_and_serve_say_no_guard_can_be_fitted_to_a_model_without_a_linear_layer(
        own_registry: dict, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    # both suggested `pneumoscan fit-guard ...` for it, which then refused the model; train says what they now say
    import logging

    from pneumoscan.cli import main
    from pneumoscan.service.app import create_app
    from pneumoscan.service.settings import Settings

    register_model("flatnet", description="mine", image_size=16)(FlatNet)
    run, site = tmp_path / "run", tmp_path / "site"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--model", "flatnet", "--epochs", "1",
                 "--quiet"]) == 0
    none_fits = "no chest X-ray guard can be fitted to this model (FlatNet has no nn.Linear layer"
    assert f"note: {none_fits}" in capsys.readouterr().out
    assert main(["set-threshold", "--model", str(run), "--data", str(tiny_dataset), "--split", "test", "--out",
                 str(site), "--n-boot", "20", "--backend", "torch"]) == 0
    err = capsys.readouterr().err
    assert f"instead of refusing it; {none_fits}" in err and "fit-guard" not in err, err
    film = next((tiny_dataset / "test" / "NORMAL").iterdir())
    assert main(["predict", str(film), "--model", str(site)]) == 0  # on torch, after the export it cannot have
    err = capsys.readouterr().err
    assert f"instead of being refused; {none_fits}" in err and "fit-guard" not in err, err
    with caplog.at_level(logging.WARNING, logger="pneumoscan.service"):
        create_app(Settings(model=str(site), backend="torch"))
    assert f"film too; {none_fits}" in caplog.text and "fit-guard" not in caplog.text, caplog.text


def _dropping(dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(16 * 16, 1), nn.Flatten(0))


def test_a_value_set_on_a_plugins_model_that_its_builder_refuses_is_named_in_one_line(own_registry: dict) -> None:
    register_model("dropping", description="mine", image_size=16, dropout=0.3)(_dropping)
    with pytest.raises(ValueError) as err:
        create_model("dropping", dropout=1.5)
    assert str(err.value) == ("model 'dropping': option dropout=1.5: refused by its builder (dropout probability has "
                              "to be between 0 and 1, but got 1.5)")
    # chained, not `from None`: the builder's own error stays in the traceback
    assert type(err.value.__cause__) is ValueError and "but got 1.5" in str(err.value.__cause__)


def test_a_plugins_registered_default_its_builder_refuses_is_the_builders_own_error(own_registry: dict) -> None:
    # the user set nothing: `option dropout=1.5: refused by its builder` blamed an option never given, compared with
    # the builder's signature default (0.2), not the registered one
    register_model("dropping", description="mine", image_size=16, dropout=1.5)(_dropping)
    with pytest.raises(ValueError, match=r"^dropout probability has to be between 0 and 1, but got 1.5$") as err:
        create_model("dropping")
    assert not isinstance(err.value, InputError)


class _ProbingNet(nn.Module):
    """A plugin's network with a bug of its own: a probe pass with the wrong number of channels."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.fc = nn.Linear(width, 1)
        self.conv(torch.zeros(1, 2, 8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3))).squeeze(1)


@pytest.mark.parametrize("options", [{}, {"width": 32}, {"width": 64}])
def test_a_plugins_builder_that_fails_with_its_registered_defaults_raises_its_own_error_with_its_traceback(
        own_registry: dict, options: dict) -> None:
    # 'option width=32: refused by its builder (...)' (`from None`) blamed the registered default, or an option the
    # user set, for the builder's own bug, and hid where it was
    def probing(width: int = 16) -> nn.Module:
        return _ProbingNet(width)

    register_model("probing", description="mine", image_size=32, width=32)(probing)
    with pytest.raises(RuntimeError, match="expected input") as err:
        create_model("probing", **options)
    assert not isinstance(err.value, InputError)
    assert any(entry.name == "__init__" and str(entry.path) == __file__ for entry in err.traceback)


def test_a_plugins_own_bug_under_an_option_without_a_default_is_one_neutral_line_naming_it(own_registry: dict) -> None:
    # 'option width=8: refused by its builder' blamed a valid value for the builder's own bug: a refusal cannot be told
    # from a bug there, so the line names what was given without blaming it, and keeps the builder's traceback
    def probing(width: int) -> nn.Module:
        return _ProbingNet(width)

    register_model("probing", description="mine", image_size=32)(probing)
    with pytest.raises(ValueError) as err:
        create_model("probing", width=8)
    assert isinstance(err.value, InputError)
    assert str(err.value).startswith("model 'probing' does not build with width=8 (")
    cause = err.value.__cause__
    assert isinstance(cause, RuntimeError) and "expected input" in str(cause)
    assert any(frame.name == "__init__" and frame.filename == __file__
               for frame in traceback.extract_tb(cause.__traceback__))


def test_an_ensemble_members_error_passes_through_the_ensemble_unchanged(own_registry: dict) -> None:
    # the ensemble's create_model named all its members' options (553 characters) for a member's own bug
    def buggy(width: int = 8) -> nn.Module:
        raise ValueError("plugin bug: something inside the builder")

    register_model("buggy", description="mine", image_size=32)(buggy)
    member = {"model": "buggy", "config": {"width": 8}, "image_size": 32, "mean": 0.5, "std": 0.25}
    with pytest.raises(ValueError, match=r"^plugin bug: something inside the builder$") as err:
        create_model("ensemble", members=[member, member], input_mean=0.4)
    assert not isinstance(err.value, InputError)


def test_a_refused_options_long_value_is_shortened_in_the_message(own_registry: dict) -> None:
    def listing(items: list = (), dropout: float = 0.1) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(16 * 16, 1), nn.Flatten(0))

    register_model("listing", description="mine", image_size=16)(listing)
    with pytest.raises(ValueError) as err:
        create_model("listing", items=[{"model": "x" * 50, "n": n} for n in range(100)], dropout=1.5)
    assert str(err.value).startswith("model 'listing': options items=[{...}, {...}, {...}, {...}, {...}, {...}, ...], "
                                     "dropout=1.5: refused by its builder (")
    assert len(str(err.value)) < 200


def test_an_option_without_a_default_is_named_only_when_the_model_does_not_build_with_it(own_registry: dict) -> None:
    # 'options width=8, dropout=1.5': an option the builder requires counted as set, whatever its value
    def needing(width: int, dropout: float = 0.2) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, width), nn.Dropout(dropout), nn.Linear(width, 1),
                             nn.Flatten(0))

    register_model("needing", description="mine", image_size=16)(needing)
    with pytest.raises(ValueError) as err:
        create_model("needing", width=8, dropout=1.5)
    assert str(err.value).startswith("model 'needing': option dropout=1.5: refused by its builder (")


@pytest.mark.parametrize("options", [{"width": -3}, {"width": -3, "dropout": 1.5}])
def test_a_refused_value_of_an_option_without_a_default_is_one_line_naming_it(
        own_registry: dict, options: dict) -> None:
    # torch's raw 'Trying to create tensor with negative dimension -3' (9ff0c24): a required option given was never
    # counted as set, so nothing was named. It does not build with width=-3 whatever the dropout: only width is named
    def needing(width: int, dropout: float = 0.1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, width, 3), nn.Dropout(dropout), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, 1), nn.Flatten(0))

    register_model("needing", description="mine", image_size=32)(needing)
    with pytest.raises(ValueError) as err:
        create_model("needing", **options)
    assert isinstance(err.value, InputError)
    assert str(err.value) == ("model 'needing' does not build with width=-3 (Trying to create tensor with negative "
                              "dimension -3: [-3, 1, 3, 3])")
    assert isinstance(err.value.__cause__, RuntimeError)


def test_the_check_after_a_refusal_is_a_normal_build_on_the_cpu(own_registry: dict) -> None:
    # it ran on the meta device, where builders reading a value or loading weights fail or warn
    devices = []

    def recording(dropout: float = 0.1) -> nn.Module:
        devices.append(torch.empty(1).device.type)
        return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(32 * 32, 1), nn.Flatten(0))

    register_model("recording", description="mine", image_size=32)(recording)
    with pytest.raises(ValueError, match="option dropout=1.5"):
        create_model("recording", dropout=1.5)
    assert devices == ["cpu", "cpu"]
    create_model("recording")
    assert devices[-1] == "cpu"


def test_report_says_no_guard_can_be_fitted_to_a_model_without_a_linear_layer(
        own_registry: dict, tiny_dataset: Path, tmp_path: Path) -> None:
    # its "no guard" line said "pneumoscan fit-guard fits one", which then refused the model
    import html

    from pneumoscan.cli import main

    register_model("flatnet", description="mine", image_size=16)(FlatNet)
    run, page = tmp_path / "run", tmp_path / "report.html"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(run), "--model", "flatnet", "--epochs", "1",
                 "--quiet"]) == 0
    assert main(["report", str(run), "--data", str(tiny_dataset), "--out", str(page), "--n-boot", "10",
                 "--cases", "1"]) == 0
    text = html.unescape(page.read_text(encoding="utf-8"))
    assert ("guard would refuse (scored anyway)</td><td>none: no chest X-ray guard can be fitted to this model (FlatNet "
            "has no nn.Linear layer") in text
    assert "fit-guard" not in text


class CumNet(nn.Module):
    """A model with an operation the TorchScript exporter cannot export (cummax)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cummax(x, dim=3).values.mean(dim=(1, 2, 3))[:, None]).squeeze(1)


def test_a_model_the_exporter_cannot_export_is_refused_in_one_line_and_predicted_with_pytorch(
        own_registry: dict, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """torch's exporter writes the whole graph to its C++ log (stdout) when an export fails: none of it shows."""
    from pneumoscan.export.onnx import ExportError, export_onnx_bytes
    from pneumoscan.inference.predictor import Predictor

    register_model("cumnet", description="cummax", image_size=16)(CumNet)
    meta = ArtifactMeta(model_name="cumnet", model_config={}, image_size=16, mean=0.5, std=0.25,
                        model_sources=model_sources(["cumnet"]))
    with pytest.raises(ExportError) as err:
        export_onnx_bytes(create_model("cumnet"), meta)
    assert str(err.value) == ("model 'cumnet' cannot be exported to ONNX (UnsupportedOperatorError: Exporting the "
                              "operator 'aten::cummax' to ONNX opset version 17 is not supported); predict with "
                              "--backend torch")
    assert capfd.readouterr() == ("", "")
    path = save_artifact(tmp_path / "model.safetensors", create_model("cumnet"), meta)
    with pytest.warns(UserWarning, match=r"model 'cumnet' cannot be exported to ONNX \(UnsupportedOperatorError: .*"
                                         r"not supported\); predicting with PyTorch instead"):
        assert Predictor(path).backend == "torch"
    assert capfd.readouterr() == ("", "")


class Noted(nn.Sequential):
    """A model keeping a Python object in its state dict, which safetensors cannot store."""

    def get_extra_state(self) -> dict:
        return {"note": "not a tensor"}

    def set_extra_state(self, state: dict) -> None:
        pass


@pytest.mark.parametrize(("model", "message"), [
    (Noted(nn.Flatten(), nn.Linear(32 * 32, 1), nn.Flatten(0)),
     r"model 'twonet' keeps state that is not a tensor \(_extra_state\); pneumoscan stores models as safetensors"),
    (nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 2)), r"model 'twonet' returns \(2, 2\) for 2 images of 32 px; a "
                                                         r"pneumoscan model takes normalised images \(N, 1, H, W\)"),
    (nn.Sequential(nn.Conv2d(3, 1, 3), nn.Flatten()), r"model 'twonet' fails on a batch of 32 px images \(RuntimeError: "
                                                      r"Given groups=1, weight of size"),
])
def test_a_model_that_breaks_the_contract_is_refused_in_one_line(model: nn.Module, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_model_output(model, "twonet", 32)
    check_model_output(create_model("cnn"), "cnn", 32)


def test_an_edited_record_of_model_sources_is_refused() -> None:
    header = json.loads(ArtifactMeta(model_name="cnn", model_config={}, image_size=32, mean=0.5, std=0.25).to_json())
    assert header_problem(header) is None
    assert header_problem({**header, "model_sources": ["acme-models"]}) == (
        "model_sources ['acme-models']: not a JSON object of where each model comes from")


def test_the_readme_example_plugin_registers_a_model_every_command_can_take(own_registry: dict, tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/training.md "Your own architecture": its pyproject.toml names its module in the group pneumoscan loads, and that
    module registers a model that keeps the contract, has a Grad-CAM layer and features, and exports."""
    import importlib
    import re
    import tomllib

    from pneumoscan.explain.gradcam import cam_layers
    from pneumoscan.export.onnx import export_onnx_bytes
    from pneumoscan.models.registry import PLUGIN_GROUP, final_linear_name, get_spec

    guide = (SRC.parent / "docs" / "training.md").read_text()
    section = guide.split("\n## Your own architecture\n", 1)[1].split("\n## ", 1)[0]
    toml, python = (re.search(rf"```{kind}\n(.*?)```", section, re.S).group(1) for kind in ("toml", "python"))
    project = tomllib.loads(toml)["project"]
    (module,) = project["entry-points"][PLUGIN_GROUP].values()
    (tmp_path / f"{module}.py").write_text(python)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(own_registry)
    importlib.import_module(module)
    del sys.modules[module]  # the file is gone after the test
    (name,) = set(own_registry) - before
    assert f"--model {name}" in section and f"pip install '{project['name']}=={project['version']}'" in section
    spec = get_spec(name)
    model = create_model(name)
    check_model_output(model, name, spec.image_size)
    meta = ArtifactMeta(model_name=name, model_config={}, image_size=spec.image_size, mean=0.5, std=0.25)
    assert cam_layers(model, meta) and final_linear_name(model) == "head"
    assert export_onnx_bytes(model, meta)


def test_train_refuses_a_model_that_breaks_the_contract_before_reading_images(
        own_registry: dict, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.cli import main

    register_model("twonet", description="two logits", image_size=32)(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 2)))
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "run"), "--model", "twonet",
                 "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == ("pneumoscan: error: model 'twonet' returns (2, 2) for 2 images of 32 px; a pneumoscan model takes "
                   "normalised images (N, 1, H, W) and returns one logit per image, shape (N,) (e.g. end forward() "
                   "with .squeeze(1))\n"), err


# -- a run or an artifact of a plugin's model, where the plugin is missing or another version -----------------------
class AcmeNet(nn.Module):
    """A plugin's model: one convolution (`extra` adds a second, as a new version of its package might)."""

    def __init__(self, width: int = 4, extra: bool = False) -> None:
        super().__init__()
        layers = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()] + ([nn.Conv2d(width, width, 3, padding=1)] if extra else [])
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def acme_deeper(width: int = 4, extra: bool = False) -> nn.Module:
    """A later version's acmenet: the same options, another network."""
    return AcmeNet(width, extra=True)


def acme_wider(width: int = 8, extra: bool = False) -> nn.Module:
    """A later version's acmenet: the same network, another default."""
    return AcmeNet(width, extra)


def acme_renamed(channels: int = 4, extra: bool = False) -> nn.Module:
    """A later version's acmenet: an option renamed."""
    return AcmeNet(channels, extra)


def install_acme(own_registry: dict, version: str, builder: Callable[..., nn.Module] = AcmeNet) -> None:
    """Model 'acmenet' as the entry point 'acme' of acme-models `version` registers it."""
    own_registry.pop("acmenet", None)
    register_model("acmenet", description="a plugin's model", image_size=32)(builder)
    own_registry["acmenet"] = replace(own_registry["acmenet"],
                                      origin=ModelOrigin("acme_models", "acme-models", version, "acme"))


ACME_RECORD = {"acmenet": {"distribution": "acme-models", "version": "0.1", "entry_point": "acme",
                           "module": "acme_models"}}


@pytest.fixture
def acme_run(own_registry: dict, tiny_dataset: Path, tmp_path: Path) -> Path:
    """A run of acme-models 0.1's acmenet, stopped after 1 of its 2 epochs (as an interrupted run is)."""
    from pneumoscan.training.config import TrainConfig
    from pneumoscan.training.trainer import train

    install_acme(own_registry, "0.1")
    run = tmp_path / "run"
    train(TrainConfig(data=str(tiny_dataset), out=str(run), model="acmenet", epochs=1, batch_size=8, augment=0.0),
          progress=False, verbose=False)
    return run


def resume(run: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`pneumoscan train --out RUN --resume --epochs 2`: its exit code and stderr."""
    from pneumoscan.cli import main

    code = main(["train", "--out", str(run), "--resume", "--epochs", "2", "--quiet"])
    return code, capsys.readouterr().err


def test_resuming_a_run_whose_plugin_is_missing_says_what_to_install(acme_run: Path, own_registry: dict,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The run's config.json records where its model comes from, as its artifact does; a run started before it did
    is told from its model files."""
    config = json.loads((acme_run / "config.json").read_text())
    assert config["model_sources"] == ACME_RECORD
    del own_registry["acmenet"]
    missing = (f"pneumoscan: error: {acme_run}: model 'acmenet' comes from the plugin package acme-models 0.1 (module "
               f"acme_models), which is not installed here; install it (pip install 'acme-models==0.1') and run the "
               f"command again\n")
    assert resume(acme_run, capsys) == (2, missing)
    del config["model_sources"]
    (acme_run / "config.json").write_text(json.dumps(config))
    assert resume(acme_run, capsys) == (2, missing)


def test_resuming_with_another_plugin_version_warns_or_names_both_versions(acme_run: Path, own_registry: dict,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    install_acme(own_registry, "0.3", acme_deeper)  # weights that do not fit
    code, err = resume(acme_run, capsys)
    assert code == 2 and err.startswith(f"pneumoscan: error: {acme_run / 'last.pt'}: its weights do not fit model "
                                        f"'acmenet' (Missing key(s) in state_dict"), err
    assert err.endswith("), as model 'acmenet' was trained with acme-models 0.1 and acme-models 0.3 is installed "
                        "here; install acme-models==0.1 to resume it\n") and len(err.splitlines()) == 1, err
    install_acme(own_registry, "0.2")  # the same weights
    code, err = resume(acme_run, capsys)
    assert code == 0, err
    assert err.splitlines()[0] == (f"pneumoscan: warning: {acme_run}: model 'acmenet' was trained with acme-models 0.1 "
                                   f"and acme-models 0.2 is installed here; its checkpoint loads, but the run continues "
                                   f"with the installed version, so its model may differ from one trained with a single "
                                   f"version (pip install 'acme-models==0.1' to continue as it started)"), err


def test_a_run_resumed_with_another_plugin_version_records_both_and_warns_once(acme_run: Path, own_registry: dict,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Its config.json records the version it continues with, so the next resume does not warn again, and keeps the
    earlier one with the epochs it trained; the model file says both."""
    install_acme(own_registry, "0.2")
    code, err = resume(acme_run, capsys)
    assert code == 0 and "its checkpoint loads, but the run continues with the installed version" in err, err
    now = {"acmenet": {**ACME_RECORD["acmenet"], "version": "0.2"}}
    earlier = [{"until_epoch": 1, "model_sources": ACME_RECORD}]
    config = json.loads((acme_run / "config.json").read_text())
    assert (config["model_sources"], config["earlier_model_sources"]) == (now, earlier)
    meta = read_meta(acme_run / "model.safetensors")
    assert (meta.model_sources, meta.training["earlier_model_sources"]) == (now, earlier)
    code, err = main_train(["--out", str(acme_run), "--resume", "--epochs", "3", "--quiet"], capsys)
    assert code == 0 and "acme-models" not in err, err  # only the longer schedule's warning
    assert json.loads((acme_run / "config.json").read_text())["earlier_model_sources"] == earlier


def main_train(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`pneumoscan train ARGS`: its exit code and stderr."""
    from pneumoscan.cli import main

    code = main(["train", *args])
    return code, capsys.readouterr().err


def test_resuming_with_weights_that_do_not_fit_the_model_is_refused_in_one_line(
        acme_run: Path, own_registry: dict, capsys: pytest.CaptureFixture[str]) -> None:
    install_acme(own_registry, "0.1", acme_deeper)  # its code changed, not its version
    code, err = resume(acme_run, capsys)
    assert code == 2 and err == (f"pneumoscan: error: {acme_run / 'last.pt'}: its weights do not fit model 'acmenet' "
                                 f"(Missing key(s) in state_dict: \"features.2.weight\", \"features.2.bias\".), as the "
                                 f"code that builds it is not the code the run started with; resume it with the "
                                 f"versions of pneumoscan and of the model's package it started with, or start a new "
                                 f"run with another --out\n"), err


def test_resuming_a_pretraining_whose_plugin_is_missing_says_what_to_install(
        own_registry: dict, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.cli import main

    install_acme(own_registry, "0.1")
    args = ["pretrain", "--data", str(tiny_dataset), "--out", str(tmp_path / "pre"), "--model", "acmenet",
            "--batch-size", "8", "--quiet"]
    assert main(args + ["--epochs", "1"]) == 0
    capsys.readouterr()
    del own_registry["acmenet"]
    assert main(args + ["--epochs", "2", "--resume"]) == 2
    assert capsys.readouterr().err == (
        f"pneumoscan: error: {tmp_path / 'pre'}: model 'acmenet' comes from the plugin package acme-models 0.1 "
        f"(module acme_models), which is not installed here; install it (pip install 'acme-models==0.1') and run the "
        f"command again\n")


def test_compare_of_a_run_whose_plugin_is_missing_says_what_to_install(acme_run: Path, own_registry: dict,
                                                                        tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`compare` builds each run's model for its number of weights, even from the runs' own validation scores."""
    from pneumoscan.cli import main

    del own_registry["acmenet"]
    assert main(["compare", str(acme_run), "--out", str(tmp_path / "compare.html")]) == 2
    assert capsys.readouterr().err == (
        f"pneumoscan: error: {acme_run / 'model.safetensors'}: model 'acmenet' comes from the plugin package "
        f"acme-models 0.1 (module acme_models), which is not installed here; install it (pip install "
        f"'acme-models==0.1') and run the command again\n")


def test_a_plugin_model_keeps_its_builders_defaults_so_a_later_version_that_changes_one_builds_it_again(
        acme_run: Path, own_registry: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscan.errors import PluginVersionWarning

    meta = read_meta(acme_run / "model.safetensors")
    assert meta.model_config == {"width": 4, "extra": False}
    assert json.loads((acme_run / "config.json").read_text())["model_config"] == meta.model_config
    assert model_config("cnn") == {}  # a built-in model's defaults are pneumoscan's own
    install_acme(own_registry, "0.2", acme_wider)
    with pytest.warns(PluginVersionWarning, match="model 'acmenet' was trained with acme-models 0.1 and acme-models "
                                                  "0.2 is installed here; its weights load"):
        assert load_artifact(acme_run, "cpu")[0].head.in_features == 4
    code, err = resume(acme_run, capsys)
    assert code == 0 and "its checkpoint loads, but the run continues with the installed version" in err, err
    assert read_meta(acme_run / "model.safetensors").model_config == {"width": 4, "extra": False}


def test_an_option_a_later_plugin_version_renamed_is_named_with_both_versions(
        acme_run: Path, own_registry: dict, capsys: pytest.CaptureFixture[str]) -> None:
    install_acme(own_registry, "0.2", acme_renamed)
    versions = ("as model 'acmenet' was trained with acme-models 0.1 and acme-models 0.2 is installed here; install "
                "acme-models==0.1 to")
    with pytest.raises(InputError) as err:
        load_artifact(acme_run, "cpu")
    assert str(err.value) == (f"{acme_run / 'model.safetensors'}: model 'acmenet' has no option 'width'; its options "
                              f"are: channels, extra, {versions} load it")
    assert resume(acme_run, capsys) == (2, f"pneumoscan: error: {acme_run}: model 'acmenet' has no option 'width'; its "
                                           f"options are: channels, extra, {versions} resume it\n")


def test_weights_that_load_into_another_plugin_version_are_warned_about_naming_both(own_registry: dict,
                                                                                    tmp_path: Path) -> None:
    from pneumoscan.errors import PluginVersionWarning

    install_acme(own_registry, "0.2")
    path = save_artifact(tmp_path / "model.safetensors", AcmeNet(),
                         ArtifactMeta(model_name="acmenet", model_config={}, image_size=32, mean=0.5, std=0.25,
                                      model_sources=ACME_RECORD))
    with pytest.warns(PluginVersionWarning) as caught:
        assert isinstance(load_artifact(path, "cpu")[0], AcmeNet)
    assert [str(w.message) for w in caught] == [
        f"{path}: model 'acmenet' was trained with acme-models 0.1 and acme-models 0.2 is installed here; its weights "
        f"load, but its results may differ from the ones it was validated with (pip install 'acme-models==0.1' for "
        f"the version it was trained with)"]


@pytest.mark.parametrize("then", ["0.1", "0.3"])
def test_a_plugin_version_whose_resume_trained_no_epoch_is_not_recorded_nor_named(
        acme_run: Path, own_registry: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        then: str) -> None:
    """A run of acme-models 0.1 resumed under 0.2, which stops within its first epoch, then resumed under `then` and
    finished: 0.2 trained no epoch, so neither config.json nor the artifact names it, and the second resume's warning
    names 0.1, which trained the checkpoint (it said 'trained with acme-models 0.2', and 'pip install
    acme-models==0.2 to continue as it started'). With 0.1 again the run has one version: no warning, no
    `earlier_model_sources` (it kept a record of 0.1 replaced by 0.1)."""
    import pneumoscan.training.trainer as trainer

    install_acme(own_registry, "0.2")
    real = trainer.augment_batch
    monkeypatch.setattr(trainer, "augment_batch", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, err = resume(acme_run, capsys)
    assert code == 130 and "and acme-models 0.2 is installed here" in err, err
    monkeypatch.setattr(trainer, "augment_batch", real)
    install_acme(own_registry, then)
    code, err = resume(acme_run, capsys)
    warned = [line for line in err.splitlines() if "acme-models" in line]
    config = json.loads((acme_run / "config.json").read_text())
    meta = read_meta(acme_run / "model.safetensors")
    records = [config["model_sources"], config.get("earlier_model_sources"), meta.model_sources,
               meta.training.get("earlier_model_sources")]
    assert code == 0 and meta.training["config"]["epochs"] == 2 and "0.2" not in json.dumps(records), records
    if then == "0.1":
        assert warned == []
        assert (config["model_sources"], meta.model_sources) == (ACME_RECORD, ACME_RECORD)
        assert "earlier_model_sources" not in config and "earlier_model_sources" not in meta.training, config
    else:
        assert len(warned) == 1 and warned[0].startswith(
            f"pneumoscan: warning: {acme_run}: model 'acmenet' was trained with acme-models 0.1 and acme-models 0.3 "
            f"is installed here; its checkpoint loads"), err
        now = {"acmenet": {**ACME_RECORD["acmenet"], "version": "0.3"}}
        earlier = [{"until_epoch": 1, "model_sources": ACME_RECORD}]
        assert (config["model_sources"], config["earlier_model_sources"]) == (now, earlier)
        assert (meta.model_sources, meta.training["earlier_model_sources"]) == (now, earlier)


def test_after_a_resume_that_trained_no_epoch_a_missing_plugin_is_named_by_the_version_that_trained_the_run(
        acme_run: Path, own_registry: dict, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """acme-models 0.1 trained the run's epoch, a resume under 0.2 stopped within its first, then the plugin was
    uninstalled: resuming says to install 0.1 (it said 0.2, which trained nothing and resumes only with a warning)."""
    import pneumoscan.training.trainer as trainer

    install_acme(own_registry, "0.2")
    monkeypatch.setattr(trainer, "augment_batch", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert resume(acme_run, capsys)[0] == 130
    del own_registry["acmenet"]
    code, err = resume(acme_run, capsys)
    assert (code, err) == (2, f"pneumoscan: error: {acme_run}: model 'acmenet' comes from the plugin package "
                              f"acme-models 0.1 (module acme_models), which is not installed here; install it (pip "
                              f"install 'acme-models==0.1') and run the command again\n")


def test_ctrl_c_while_a_plugin_is_imported_is_not_taken_for_a_broken_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin whose C extension reports a Ctrl+C as ImportError('initialization failed') was left out with a
    PluginWarning, and the command went on past the Ctrl+C."""
    from importlib import metadata

    point = metadata.EntryPoint(name="ctrl_c", value="ctrl_c_models", group=registry.PLUGIN_GROUP)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [point] if group == registry.PLUGIN_GROUP else [])
    interrupt_import(monkeypatch, "ctrl_c_models")
    with pytest.raises(KeyboardInterrupt):
        registry._load_plugins()


def test_after_a_ctrl_c_while_plugins_load_the_next_call_loads_them_all(own_registry: dict,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugins counted as loaded after a Ctrl+C in the first one's registration, which kept the one model it had
    registered: the rest of a notebook session ran without its other models and the plugins after it, no warning."""
    import types
    from importlib import metadata

    calls: list[int] = []

    def register_first() -> None:
        calls.append(1)
        registry.register_model("halfnet", description="registered before the Ctrl+C", image_size=32)(sized)
        if len(calls) == 1:
            raise KeyboardInterrupt
        registry.register_model("restnet", description="registered after it", image_size=32)(sized)

    def register_second() -> None:
        registry.register_model("secondnet", description="the next plugin's", image_size=32)(sized)

    module = types.ModuleType("ctrl_c_registry")
    module.first, module.second = register_first, register_second  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ctrl_c_registry", module)
    points = [metadata.EntryPoint(name=name, value=f"ctrl_c_registry:{name}", group=registry.PLUGIN_GROUP)
              for name in ("first", "second")]
    monkeypatch.setattr(metadata, "entry_points", lambda group: points if group == registry.PLUGIN_GROUP else [])
    monkeypatch.setitem(registry._LOADED, "plugins", False)
    with pytest.raises(KeyboardInterrupt):
        registry.list_models()
    assert not {"halfnet", "restnet", "secondnet"} & set(own_registry)
    assert {"halfnet", "restnet", "secondnet"} <= set(registry.list_models())


def _reading(width: int, dropout: float = 0.1) -> nn.Module:
    """A plugin's builder that reads a value of its weights, as a check of its initialisation does."""
    conv = nn.Conv2d(1, width, 3)
    assert conv.weight.abs().sum().item() > 0
    return nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, 1),
                         nn.Flatten(0))


def test_a_refused_option_is_named_for_a_builder_that_reads_a_value_of_its_weights(own_registry: dict) -> None:
    # the check build ran on the meta device, where `.item()` fails: 'does not build with width=8' named the
    # required option for dropout's reason
    register_model("reading", description="mine", image_size=32)(_reading)
    with pytest.raises(ValueError) as err:
        create_model("reading", width=8, dropout=1.5)
    assert str(err.value) == ("model 'reading': option dropout=1.5: refused by its builder (dropout probability has "
                              "to be between 0 and 1, but got 1.5)")


def test_a_refused_option_of_a_builder_loading_weights_is_named_without_warnings(own_registry: dict,
                                                                                  tmp_path: Path) -> None:
    # on the meta device each `load_state_dict` copy warned 'copying from a non-meta parameter ... is a no-op'
    weights = tmp_path / "backbone.pt"
    torch.save(nn.Linear(16 * 16, 1).state_dict(), weights)

    def pretrained(dropout: float = 0.2) -> nn.Module:
        head = nn.Linear(16 * 16, 1)
        head.load_state_dict(torch.load(weights, map_location="cpu"))
        return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), head, nn.Flatten(0))

    register_model("pretrained", description="mine", image_size=16)(pretrained)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ValueError, match=r"^model 'pretrained': option dropout=1.5: refused by its builder \("):
            create_model("pretrained", dropout=1.5)
    assert [str(w.message) for w in caught] == []


def test_a_refused_option_is_named_beside_an_array_option_given(own_registry: dict) -> None:
    # comparing an array with its default element by element was a raw 'truth value of an array ... is ambiguous'
    def binned(dropout: float = 0.2, bins: np.ndarray = np.array([2, 2])) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(16 * 16, 1), nn.Flatten(0))

    register_model("binned", description="mine", image_size=16)(binned)
    with pytest.raises(ValueError, match=r"^model 'binned': option dropout=1.5: refused by its builder \("):
        create_model("binned", dropout=1.5, bins=np.array([2, 2]))
    with pytest.raises(ValueError, match=r"^model 'binned': options dropout=1.5, bins=.*refused by its builder \("):
        create_model("binned", dropout=1.5, bins=np.array([3, 4]))
