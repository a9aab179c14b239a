"""`--prevalence`: the Bayes odds adjustment starts from the prior the model's probabilities answer to."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pneumoscan.artifact import ArtifactMeta
from pneumoscan.inference.predictor import Predictor
from pneumoscan.inference.prevalence import model_prior


def _meta(training: dict, prevalence: float = 0.75) -> ArtifactMeta:
    return ArtifactMeta("resnet10", {}, 32, 0.5, 0.25, train_prevalence=prevalence, training=training)


@pytest.mark.parametrize(("balance", "prior"), [("sampler", 0.5), ("weighted", 0.5), ("none", 0.75)])
def test_model_prior_is_one_half_for_class_balanced_training(balance: str, prior: float) -> None:
    assert model_prior(_meta({"config": {"balance": balance}})) == pytest.approx(prior)


def test_model_prior_keeps_the_stored_prevalence_when_the_balancing_is_not_recorded() -> None:
    assert model_prior(_meta({})) == pytest.approx(0.75)


def test_model_prior_of_an_ensemble_is_the_mean_of_its_members_prior_log_odds() -> None:
    meta = _meta({"members": [{"config": {"balance": "sampler"}}, {"config": {"balance": "none"}}]})
    assert model_prior(meta) == pytest.approx(1 / (1 + math.exp(-0.5 * math.log(3))))


def test_prevalence_of_one_half_leaves_a_balanced_models_probabilities_alone(sample_dir) -> None:
    """The shipped model trained on balanced batches (stored training prevalence 0.74): its probabilities are
    those of a 50 % prior, so --prevalence 0.5 changes nothing, and --prevalence 0.1 multiplies the odds by 1/9."""
    from pneumoscan.data.preprocess import load_image

    plain = Predictor(None, backend="torch", guard=False)
    assert plain.meta.training["config"]["balance"] == "sampler" and plain.meta.train_prevalence > 0.7
    files = sorted((sample_dir / "train" / "PNEUMONIA").iterdir())[:2] + sorted((sample_dir / "train" / "NORMAL").iterdir())[:2]
    images = np.stack([load_image(f.read_bytes(), plain.size, name=str(f)) for f in files])
    p = plain.predict_images(images)
    half = Predictor(None, backend="torch", guard=False, prevalence=0.5)
    np.testing.assert_allclose(half.predict_images(images), p, rtol=1e-9)
    assert half.threshold == pytest.approx(plain.threshold, rel=1e-9)
    low = Predictor(None, backend="torch", guard=False, prevalence=0.1).predict_images(images)
    np.testing.assert_allclose(low / (1 - low), p / (1 - p) / 9, rtol=1e-6)


def test_model_prior_of_unbalanced_members_is_each_members_own_share_of_pneumonia() -> None:
    """Members trained without balancing answer to their own data's share, not the first member's."""
    three_to_one = {"config": {"balance": "none"}, "data": {"train": {"NORMAL": 10, "PNEUMONIA": 30}}}
    one_to_three = {"config": {"balance": "none"}, "data": {"train": {"NORMAL": 30, "PNEUMONIA": 10}}}
    assert model_prior(_meta({"members": [three_to_one, one_to_three]}, prevalence=0.75)) == pytest.approx(0.5)
    assert model_prior(_meta(three_to_one, prevalence=0.75)) == pytest.approx(0.75)


@pytest.mark.parametrize("stored", [0.0, 1.0, float("nan"), "0.7"])
def test_a_stored_prevalence_no_prior_can_be_read_from_is_one_line_not_a_math_error(stored: object) -> None:
    """An edited artifact's training prevalence of 0 or 1 made `model_prior` take log(0): a math domain error."""
    from pneumoscan.errors import InputError
    from pneumoscan.inference.prevalence import prior_problem

    meta = _meta({"config": {"balance": "none"}}, prevalence=stored)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"^its stored training prevalence is unusable \(.*, not a share strictly "
                                         r"between 0 and 1\), as in an edited file; restore the model file or train "
                                         r"the model again$"):
        model_prior(meta)
    assert prior_problem(_meta({"config": {"balance": "sampler"}}, prevalence=stored)) is None  # 0.5, never read


def test_predict_and_report_name_the_edited_prevalence_in_one_line(tiny_run, sample_films, tmp_path, capsys) -> None:
    from pneumoscan.artifact import load_artifact, save_artifact
    from pneumoscan.cli import main
    from pneumoscan.report.build import _prior_text

    net, meta = load_artifact(tiny_run, device="cpu")
    meta.train_prevalence, meta.training = 1.0, {**meta.training, "config": {**meta.training["config"], "balance": "none"}}
    meta.training.pop("data", None)
    edited = save_artifact(tmp_path / "edited.safetensors", net, meta)
    film = sorted((sample_films / "PNEUMONIA").iterdir())[0]
    for command in (["predict", str(film)], ["predict", str(film), "--prevalence", "0.2"],
                    ["explain", str(film), "--out", str(tmp_path / "h.png")]):
        assert main([command[0], "--model", str(edited), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err == (f"pneumoscan: error: {edited}: its stored training prevalence is unusable (1.0, not a share "
                       f"strictly between 0 and 1), as in an edited file; restore the model file or train the model "
                       f"again\n"), err
    assert _prior_text(meta) == "unusable: 1.0, not a share strictly between 0 and 1, as in an edited file"


@pytest.mark.parametrize("training", [
    {"config": None}, {"config": [1]}, {"config": True, "data": "x"}, {"data": [1]}, {"data": {"train": 3}},
    {"data": {"train": {"NORMAL": "3", "PNEUMONIA": "5"}}}, {"data": {"train": {"NORMAL": True, "PNEUMONIA": 2}}},
    {"members": 143}, {"members": True}, {"members": [{"config": [1]}, {"data": None}]},
])
def test_a_training_record_edited_out_of_shape_counts_as_not_recorded(training: dict) -> None:
    """Its balancing and class counts are not recorded, so the stored prevalence is the prior (as for a run that
    predates them); an edited record ended predict, evaluate and serve in an AttributeError or TypeError."""
    meta = _meta(training)
    assert model_prior(meta) == pytest.approx(0.75)
    assert meta.placed_data().shown is None


@pytest.mark.parametrize("fmt", ["--csv", "--json"])
def test_predict_rows_record_the_prevalence_their_probabilities_assume(fmt: str, tiny_run, tiny_data, tmp_path,
                                                                       capsys) -> None:
    """`predict --prevalence P --csv` moved the probability column, but only the threshold column showed it: a
    reader of the file could not tell which prevalence P was for. Each row names it, as the service's answer does:
    the one given, else the model's prior (0.5 after class-balanced training, as tiny_run's), unreadable rows too."""
    import csv
    import io
    import json

    from pneumoscan.cli import main

    (tmp_path / "broken.png").write_bytes(b"not an image")
    films = [str(tmp_path / "broken.png"), str(tiny_data / "test" / "NORMAL")]

    def rows(*options: str) -> list[dict]:
        main(["predict", "--model", str(tiny_run), *films, fmt, "--quiet", *options])
        out = capsys.readouterr().out
        return json.loads(out) if fmt == "--json" else list(csv.DictReader(io.StringIO(out)))

    plain, moved = rows(), rows("--prevalence", "0.05")
    assert len(plain) == len(moved) > 2 and any(r["error"] for r in plain)
    assert {float(r["prevalence"]) for r in plain} == {0.5}
    assert {float(r["prevalence"]) for r in moved} == {0.05}
    assert all(float(m["probability"]) < float(p["probability"]) for p, m in zip(plain, moved) if p["probability"])
