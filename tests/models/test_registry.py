from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pneumoscan.artifact import ArtifactMeta, save_artifact
from pneumoscan.cli import main
from pneumoscan.errors import PneumoscanError
from pneumoscan.models.registry import create_model, list_models
from tests.conftest import write_xray


def test_registry_lists_the_families() -> None:
    names = list_models()
    assert {"mlp", "cnn", "resnet10", "resnet18"} <= set(names)


def test_models_describes_each_architecture_in_plain_words(capsys: pytest.CaptureFixture[str]) -> None:
    """`pneumoscan models` says what each built-in network is (not where it came from in the project's history), and
    the layer counts it states are those of the networks."""
    from pneumoscan.models.registry import get_spec

    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "multilayer perceptron" in rows["mlp"] and "convolutional network" in rows["cnn"]
    assert not any("seeds" in row for row in rows.values()), rows
    for name, depth in (("resnet10", 10), ("resnet18", 18)):
        assert f"{depth} layers" in get_spec(name).description
        weighted = [m for m in create_model(name).modules()
                    if isinstance(m, torch.nn.Linear) or (isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))]
        assert len(weighted) == depth  # 1x1 shortcut projections are not counted as layers, as in ResNet's naming


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet10", "resnet18"])
def test_single_logit(name: str) -> None:
    size = 64 if name == "mlp" else 48
    model = create_model(name, image_size=size) if name == "mlp" else create_model(name)
    model.eval()
    out = model(torch.randn(3, 1, size, size))
    assert out.shape == (3,)


def test_unknown_model() -> None:
    with pytest.raises(KeyError, match="choose one of"):
        create_model("vgg99")


def test_unknown_option_is_named_with_the_builders_options() -> None:
    with pytest.raises(TypeError, match="model 'cnn' has no option 'width'; its options are: widths, dropout") as err:
        create_model("cnn", width=(8, 16))
    assert isinstance(err.value, PneumoscanError)


@pytest.mark.parametrize(("name", "options", "problem"), [
    ("cnn", {"widths": 3}, "option widths takes a list of integers, not 3"),
    ("cnn", {"widths": "abc"}, "option widths takes a list of integers, not 'abc'"),
    ("cnn", {"widths": [8, 16.5]}, "option widths takes a list of integers, not [8, 16.5]"),
    ("cnn", {"dropout": "0.3"}, "option dropout takes a number, not '0.3'"),
    ("mlp", {"image_size": 64.0}, "option image_size takes an integer, not 64.0"),
    ("resnet10", {"stem": True}, "option stem takes an integer, not True"),
])
def test_an_option_value_of_the_wrong_kind_is_named_with_what_it_takes(name: str, options: dict, problem: str) -> None:
    # a raw TypeError from inside the builder ('int' object is not iterable, not all arguments converted during
    # string formatting), naming neither the option nor the model
    with pytest.raises(TypeError) as err:
        create_model(name, **options)
    assert isinstance(err.value, PneumoscanError) and str(err.value) == f"model {name!r}: {problem}"


@pytest.mark.parametrize(("name", "options", "problem"), [
    ("cnn", {"dropout": 1.5}, "option dropout=1.5: refused by its builder (dropout probability has to be between 0 "
                              "and 1, but got 1.5)"),
    ("tv_resnet18", {"dropout": -0.1}, "option dropout=-0.1: refused by its builder (dropout probability has to be "
                                       "between 0 and 1, but got -0.1)"),
    ("resnet10", {"stem": -1, "widths": (32, 64, 128, 256)},  # the default given again is not named
     "option stem=-1: refused by its builder (Trying to create tensor with negative dimension -1: [-1, 1, 3, 3])"),
    ("mlp", {"hidden": [-5], "dropout": 2.0}, "options hidden=[-5], dropout=2.0: refused by its builder ("),
])
def test_an_option_value_the_builder_refuses_is_named_in_one_line(name: str, options: dict, problem: str) -> None:
    # torch's raw ValueError or RuntimeError from inside the builder named neither the model nor, for a negative
    # width, the option
    with pytest.raises(ValueError) as err:
        create_model(name, **options)
    assert isinstance(err.value, PneumoscanError) and str(err.value).startswith(f"model {name!r}: {problem}")
    assert "\n" not in str(err.value)


def test_option_values_of_the_annotated_kinds_are_taken() -> None:
    # JSON gives lists for tuples and ints for whole floats; a registered or signature default is always taken
    assert create_model("cnn", widths=[8, 16], dropout=0).head[-1].in_features == 16
    assert create_model("mlp", image_size=32, hidden=(8,)).image_size == 32


def test_numpy_numbers_and_arrays_are_taken_where_the_annotation_says_int_float_or_list() -> None:
    # a config read from arrays (a sweep's grid) holds numpy numbers: refused as 'not 64' before; bool is no integer
    import numpy as np

    assert create_model("mlp", image_size=np.int64(32), hidden=(8,)).image_size == 32
    assert create_model("cnn", dropout=np.float32(0.3), widths=[np.int64(8), 16]).head[-1].in_features == 16
    assert create_model("resnet18", widths=np.array([8, 16, 32, 64])).head[-1].in_features == 64
    with pytest.raises(TypeError, match="option stem takes an integer, not np.True_"):
        create_model("resnet10", stem=np.bool_(True))
    with pytest.raises(TypeError, match="option widths takes a list of integers, not array"):
        create_model("resnet18", widths=np.array(3))  # 0-d: one value, not a list (a raw TypeError, reviewI26)


def test_artifact_with_an_unknown_option_is_refused_by_file_name(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = save_artifact(tmp_path / "model.safetensors", create_model("cnn"),
                         ArtifactMeta(model_name="cnn", model_config={"depth": 5}, image_size=32, mean=0.5, std=0.25))
    image = write_xray(tmp_path / "x.png", 1, 0)
    assert main(["predict", "--model", str(path), "--backend", "torch", str(image)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: model 'cnn' has no option 'depth'" in err and "Traceback" not in err


@pytest.mark.parametrize(("name", "side", "message"), [
    ("cnn", 15, "cnn needs images of at least 16 x 16 px, got 15 x 15"),
    ("resnet10", 2, "resnet needs images of at least 3 x 3 px, got 2 x 2"),
    ("mlp", 63, "mlp is built for 64 x 64 px images, got 63 x 63"),
])
def test_an_input_the_model_cannot_take_is_refused_by_name(name: str, side: int, message: str) -> None:
    model = create_model(name).eval()
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(2, 1, side, side))
    with pytest.raises(ValueError, match=r"shape \(N, 1, H, W\)"):
        model(torch.zeros(1, side, side))


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet10", "resnet18"])
def test_smallest_and_odd_input_sizes_run(name: str) -> None:
    sizes = [17, 33] if name == "mlp" else [16 if name == "cnn" else 3, 17, 33]
    for size in sizes:
        model = create_model(name, image_size=size) if name == "mlp" else create_model(name)
        assert model.eval()(torch.randn(1, 1, size, size)).shape == (1,)
        assert model.train()(torch.randn(2, 1, size, size)).shape == (2,)


def test_an_unknown_name_lists_the_trainable_models_and_the_ensemble_apart() -> None:
    # train --model resnet11 offered 'ensemble' among the choices, which train then refused
    from pneumoscan.errors import InputError

    with pytest.raises(InputError) as err:
        create_model("resnet11")
    assert str(err.value).startswith(f"unknown model 'resnet11'; choose one of: {', '.join(list_models())} "
                                     f"(`pneumoscan models` describes them; ensemble: built from trained runs)")
    assert "ensemble" not in list_models()


def test_a_model_name_or_option_mistake_is_an_input_error() -> None:
    """The Python API's promise: every user mistake is an InputError (these are also KeyError and TypeError)."""
    from pneumoscan.errors import InputError

    with pytest.raises(InputError, match="unknown model 'vgg99'; choose one of"):
        create_model("vgg99")
    with pytest.raises(InputError, match="model 'cnn' has no option 'width'"):
        create_model("cnn", width=(8, 16))
