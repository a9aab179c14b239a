"""`train --init` with ImageNet weights on disk (torchvision's .pth, timm's .safetensors): what loads, what is refused."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pneumoscan.artifact import file_sha256, read_meta
from pneumoscan.cli import main
from pneumoscan.errors import InputError, speaks_python
from pneumoscan.models.registry import create_model
from pneumoscan.models.tv_resnet import BasicBlock, TvResNet
from pneumoscan.training.pretrain import load_pretrained
from pneumoscan.training.transfer import load_transfer, written_by_pneumoscan
from tests.conftest import imagenet_state_dict


def save_pth(weights: dict, path: Path) -> Path:
    torch.save(weights, path)
    return path


def save_timm(weights: dict, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path), metadata={"format": "pt"})
    return path


@pytest.mark.parametrize(("name", "save", "file_name"), [
    ("tv_resnet18", save_pth, "resnet18-f37072fd.pth"),
    ("tv_resnet18", save_timm, "model.safetensors"),
    ("tv_resnet50", save_pth, "resnet50-0676ba61.pth"),
])
def test_imagenet_weights_load_by_name_with_a_grey_conv1_and_a_new_head(name: str, save, file_name: str,
                                                                        tmp_path: Path) -> None:
    weights = imagenet_state_dict(name)
    path = save(weights, tmp_path / file_name)
    model = create_model(name)
    head = {k: v.clone() for k, v in model.fc.state_dict().items()}
    message = load_transfer(model, path, name)
    loaded = model.state_dict()
    assert torch.equal(loaded["conv1.weight"], weights["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.fc.weight, head["weight"]) and torch.equal(model.fc.bias, head["bias"])
    backbone = [k for k in loaded if k not in ("conv1.weight", "fc.weight", "fc.bias")
                and not k.endswith("num_batches_tracked")]
    for key in backbone:
        assert torch.equal(loaded[key], weights[key]), key
    assert message == (f"init: {len(backbone) + 1} tensors from {path} (conv1.weight summed over its RGB channels); "
                       "fc starts anew")
    assert not written_by_pneumoscan(path)


def test_the_grey_conv1_answers_a_grey_image_as_the_rgb_one_answers_it_in_three_equal_channels(tmp_path: Path) -> None:
    weights = imagenet_state_dict("tv_resnet18", seed=3)
    model = create_model("tv_resnet18").eval()
    load_transfer(model, save_pth(weights, tmp_path / "w.pth"), "tv_resnet18")
    grey = torch.randn(2, 1, 20, 20)
    rgb = torch.nn.functional.conv2d(grey.expand(-1, 3, -1, -1), weights["conv1.weight"], stride=2, padding=3)
    torch.testing.assert_close(model.conv1(grey), rgb, rtol=1e-5, atol=1e-5)


def test_a_wrapped_checkpoint_of_dataparallel_loads_too(tmp_path: Path) -> None:
    weights = imagenet_state_dict("tv_resnet18")
    path = save_pth({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in weights.items()}}, tmp_path / "ckpt.pth")
    model = create_model("tv_resnet18")
    load_transfer(model, path, "tv_resnet18")
    assert torch.equal(model.layer3[1].conv2.weight, weights["layer3.1.conv2.weight"])


def _refusal(model_name: str, path: Path) -> str:
    with pytest.raises(InputError) as err:
        load_transfer(create_model(model_name), path, model_name)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    return text


def test_files_that_fit_too_little_are_refused_with_counts_an_expected_key_and_what_to_pass(tmp_path: Path) -> None:
    other = _refusal("tv_resnet18", save_pth(create_model("resnet10").state_dict(), tmp_path / "resnet10.pth"))
    assert "0 of the 100 tensors of tv_resnet18 (below its head) match it by name and shape" in other
    assert "e.g. conv1.weight (64, 1, 7, 7)" in other and "the file's first: stem.0.weight" in other
    assert "resnet18-f37072fd.pth" in other and "timm's resnet18 model.safetensors" in other

    deeper = imagenet_state_dict("tv_resnet18")  # a ResNet-34 holds these and more blocks of the same shapes
    deeper.update({k.replace("layer1.1.", "layer1.2."): v for k, v in deeper.items() if k.startswith("layer1.1.")})
    extra = _refusal("tv_resnet18", save_pth(deeper, tmp_path / "resnet34.pth"))
    assert "100 of the 100 tensors" in extra and "also holds 10 tensors it has no place for, e.g. layer1.2." in extra

    wider = _refusal("tv_resnet18", save_timm(imagenet_state_dict("tv_resnet50"), tmp_path / "model.safetensors"))
    assert "of the 100 tensors of tv_resnet18" in wider and "layer1.0.conv1.weight (64, 64, 3, 3); the file has (64, 64, 1, 1)" in wider


def test_a_refusal_names_the_resnet_a_file_holds_and_the_model_that_takes_it(tmp_path: Path) -> None:
    fifty = _refusal("tv_resnet18", save_pth(imagenet_state_dict("tv_resnet50"), tmp_path / "resnet50-0676ba61.pth"))
    assert "): a ResNet-50, which --model tv_resnet50 takes; pass ResNet-18 ImageNet weights" in fifty
    eighteen = _refusal("tv_resnet50", save_timm(imagenet_state_dict("tv_resnet18"), tmp_path / "model.safetensors"))
    assert "): a ResNet-18, which --model tv_resnet18 takes; pass ResNet-50 ImageNet weights" in eighteen
    into_resnet10 = _refusal("resnet10", save_pth(imagenet_state_dict("tv_resnet18"), tmp_path / "r18.pth"))
    assert "a ResNet-18, which --model tv_resnet18 takes; ImageNet weights fit only" in into_resnet10
    thirty_four = TvResNet("resnet34", BasicBlock, (3, 4, 6, 3)).state_dict()
    refusal = _refusal("tv_resnet18", save_pth(thirty_four, tmp_path / "resnet34-b627a593.pth"))
    assert "): a ResNet-34, which pneumoscan has no model for; pass ResNet-18" in refusal
    assert "another architecture; pass" in _refusal("tv_resnet18", save_pth(create_model("resnet10").state_dict(),
                                                                            tmp_path / "resnet10.pth"))

    for_resnet10 = _refusal("resnet10", save_pth(imagenet_state_dict("tv_resnet18"), tmp_path / "r18.pth"))
    assert "ImageNet weights fit only --model tv_resnet18 or tv_resnet50" in for_resnet10
    assert "pneumoscan pretrain --model resnet10" in for_resnet10
    in_python = speaks_python(_refusal)("resnet10", tmp_path / "r18.pth")  # train(..., init=...) in a notebook
    assert "which model='tv_resnet18' takes; ImageNet weights fit only model='tv_resnet18' or model='tv_resnet50'" \
        in in_python

    broken = imagenet_state_dict("tv_resnet18")
    broken["layer2.0.bn1.weight"][0] = float("nan")
    assert "NaN or infinite weights (e.g. layer2.0.bn1.weight)" in _refusal("tv_resnet18", save_pth(broken, tmp_path / "nan.pth"))


def test_what_is_not_a_state_dict_is_refused_without_running_any_of_it(tmp_path: Path) -> None:
    assert "no such file" in _refusal("tv_resnet18", tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file" * 50)
    assert "not a weights file (a state dict saved with torch.save, or .safetensors)" in _refusal("tv_resnet18", garbage)
    assert _refusal("tv_resnet18", garbage).endswith(".safetensors); pass ResNet-18 ImageNet weights (torchvision's "
                                                     "resnet18-f37072fd.pth, or timm's resnet18 model.safetensors), or "
                                                     "the pretrained.safetensors of `pneumoscan pretrain --model "
                                                     "tv_resnet18`")  # not torch's pages of advice to load it unsafely
    whole_model = save_pth(create_model("cnn"), tmp_path / "pickled_model.pth")  # unpickling it would run code
    assert ("not a weights file (a state dict saved with torch.save, or .safetensors); it holds Python objects "
            "(pneumoscan.models.cnn.SmallCNN), not only tensors: save model.state_dict() instead; pass ResNet-18"
            ) in _refusal("tv_resnet18", whole_model)
    assert "holds no state dict" in _refusal("tv_resnet18", save_pth([torch.zeros(3)], tmp_path / "list.pth"))
    assert "holds no tensors" in _refusal("tv_resnet18", save_timm({}, tmp_path / "empty.safetensors"))
    kernel_as_bias = {"bn1.bias": torch.zeros(64, 3, 7, 7)}  # an RGB kernel where the model has a vector
    assert "0 of the 100 tensors" in _refusal("tv_resnet18", save_pth(kernel_as_bias, tmp_path / "odd.pth"))


def test_a_pretrain_file_of_another_model_keeps_its_own_refusal_naming_that_model(tmp_path: Path) -> None:
    weights = {k: v for k, v in create_model("cnn").state_dict().items() if not k.startswith("head.3.")}
    path = tmp_path / "pretrained.safetensors"
    save_file(weights, str(path), metadata={"pneumoscan_pretrained": json.dumps({"model_name": "cnn"})})
    assert written_by_pneumoscan(path)
    with pytest.raises(InputError, match=r"pretrained.safetensors: weights do not fit this model \(0 tensors match, "
                                         r"\d+ foreign, \d+ missing, e.g. \S+; pretrained for --model cnn\); "
                                         "pretrain with the same --model"):
        load_pretrained(create_model("tv_resnet18"), path)


def test_train_init_from_imagenet_weights_records_the_file_and_its_checksum(
        tiny_run: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_pth(imagenet_state_dict("tv_resnet18"), tmp_path / "resnet18-f37072fd.pth")
    run = tmp_path / "run"
    common = ["train", "--data", str(tiny_data), "--out", str(run), "--model", "tv_resnet18", "--image-size", "32",
              "--batch-size", "16", "--val-fraction", "0.2", "--consistency", "0", "--quiet"]
    assert main([*common, "--init", str(weights), "--epochs", "1"]) == 0
    assert f"init: 100 tensors from {weights} (conv1.weight summed over its RGB channels); fc starts anew" in \
        capsys.readouterr().out
    source = {"file": "resnet18-f37072fd.pth", "path": str(weights), "sha256": file_sha256(weights),
              "kind": "weights file matched by name"}
    assert json.loads((run / "config.json").read_text())["init_source"] == source
    assert read_meta(run / "model.safetensors").training["init"] == source
    weights.unlink()  # a resume does not need the file again, and keeps its record
    assert main([*common, "--init", str(weights), "--epochs", "2", "--resume"]) == 0
    assert read_meta(run / "model.safetensors").training["init"] == source

    from pneumoscan.report.build import init_text
    from pneumoscan.report.run import load_run

    assert init_text(load_run(run)) == f"resnet18-f37072fd.pth (SHA-256 {source['sha256']}; weights file matched by name)"
    (run / "config.json").write_text(json.dumps({"init": "old/pretrained.safetensors"}))  # a run from before the record
    meta = read_meta(run / "model.safetensors")
    del meta.training["init"]
    assert init_text(replace(load_run(run), meta=meta)) == "old/pretrained.safetensors (no checksum recorded)"
    assert init_text(load_run(tiny_run)) == "random (trained from scratch)"


def test_train_refuses_a_foreign_init_file_in_one_line(tiny_data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = save_pth(create_model("resnet10").state_dict(), tmp_path / "resnet10.pth")
    assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--model", "tv_resnet18",
                 "--image-size", "32", "--init", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "0 of the 100 tensors" in err and "Traceback" not in err


def test_a_wrong_init_file_is_refused_before_any_image_is_decoded(tiny_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import pneumoscan.training.run_data as run_data

    def no_decoding(*args, **kwargs):
        raise AssertionError("images decoded before --init was checked")

    monkeypatch.setattr(run_data, "load_image_set", no_decoding)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a torch file" * 50)
    pretrained_cnn = tmp_path / "pretrained.safetensors"
    save_file({k: v for k, v in create_model("cnn").state_dict().items() if not k.startswith("head.3.")},
              str(pretrained_cnn), metadata={"pneumoscan_pretrained": json.dumps({"model_name": "cnn"})})
    cases = {tmp_path / "absent.pth": "no such file",
             garbage: "not a weights file",
             save_pth(create_model("resnet10").state_dict(), tmp_path / "resnet10.pth"): "0 of the 100 tensors",
             pretrained_cnn: "weights do not fit this model"}
    for path, expected in cases.items():
        assert main(["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), "--model", "tv_resnet18",
                     "--image-size", "32", "--init", str(path), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"pneumoscan: error: {path}: ") and expected in err and err.count("\n") == 0, err
    assert not (tmp_path / "r").exists()


def test_the_pretrain_command_of_the_weights_advice_can_be_pasted_for_any_model_name() -> None:
    """A plugin's model name with a space left `pneumoscan pretrain --model my net` split in a shell."""
    import shlex

    from pneumoscan.training.transfer import _advice

    assert shlex.split(_advice("my net").split("`")[1]) == ["pneumoscan", "pretrain", "--model", "my net"]
