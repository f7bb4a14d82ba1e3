"""ShallowNet shapes and probabilities; TrainConfig validation, round trips and presets."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mnistcore.config import PRESETS, TrainConfig
from mnistcore.model import ShallowNet


@pytest.mark.parametrize("hidden", [16, 128, 2048])
def test_shapes(hidden: int) -> None:
    model = ShallowNet(hidden)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {"fc1.weight": (hidden, 784), "fc1.bias": (hidden,), "fc2.weight": (10, hidden), "fc2.bias": (10,)}
    assert sum(p.numel() for p in model.parameters()) == 784 * hidden + hidden + hidden * 10 + 10
    assert model.hidden == hidden
    x = torch.randn(3, 784)
    assert model(x).shape == (3, 10)
    torch.testing.assert_close(model(x.reshape(3, 1, 28, 28)), model(x))  # image-shaped input is flattened


def test_forward_is_linear_relu_linear() -> None:
    torch.manual_seed(0)
    model = ShallowNet(32).eval()
    x = torch.randn(5, 784)
    expected = torch.relu(x @ model.fc1.weight.T + model.fc1.bias) @ model.fc2.weight.T + model.fc2.bias
    torch.testing.assert_close(model(x), expected)


def test_probabilities_are_softmax_in_eval_mode_and_restore_mode() -> None:
    torch.manual_seed(0)
    model = ShallowNet(64, dropout=0.5).train()
    x = torch.randn(10, 784)
    probs = model.probabilities(x)
    assert model.training  # mode restored
    assert probs.shape == (10, 10) and not probs.requires_grad
    torch.testing.assert_close(probs.sum(1), torch.ones(10))
    model.eval()
    torch.testing.assert_close(probs, torch.softmax(model(x), 1).detach())  # no dropout was applied
    torch.testing.assert_close(model.probabilities(x, chunk=3), probs)  # chunking changes nothing
    assert not model.training


def test_dropout_only_while_training() -> None:
    torch.manual_seed(0)
    model = ShallowNet(256, dropout=0.5)
    x = torch.randn(4, 784)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_probabilities_of_nothing() -> None:
    assert ShallowNet(16).probabilities(torch.empty(0, 784)).shape == (0, 10)


# ---------------------------------------------------------------- TrainConfig


def test_defaults_are_the_seed_recipe() -> None:
    c = PRESETS["default"]
    assert (c.hidden, c.optimizer, c.lr, c.batch_size, c.epochs) == (128, "adam", 1e-3, 128, 5)
    assert c == TrainConfig()
    assert all(16 <= p.hidden <= 2048 for p in PRESETS.values())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden": 15}, "hidden"),
        ({"hidden": 2049}, "hidden"),
        ({"hidden": 128.5}, "hidden"),
        ({"hidden": True}, "hidden"),
        ({"hidden": "128"}, "hidden"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 201}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 60001}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": 11}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"device": "tpu"}, "device"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"weight_decay": math.inf}, "weight_decay"),
        ({"schedule": "cosine"}, "schedule"),
        ({"precision": "fp16"}, "precision"),
        ({"report_every": 0}, "report_every"),
        ({"augment": "yes"}, "augment"),
        ({"seed": 2**64}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_invalid_config_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**changes)
    with pytest.raises(ValueError, match=field):
        TrainConfig().with_(**changes)
    with pytest.raises(ValueError, match=field):
        TrainConfig.from_dict({**TrainConfig().to_dict(), **changes})


@pytest.mark.parametrize("hidden", [16, 2048])
def test_hidden_range_bounds_are_valid(hidden: int) -> None:
    config = TrainConfig(hidden=hidden)
    assert ShallowNet(config.hidden).fc1.out_features == hidden


def test_numbers_of_either_kind_are_accepted_where_sensible() -> None:
    assert TrainConfig(lr=1, dropout=0, weight_decay=0).lr == 1  # JSON may hold 1 for 1.0
    assert TrainConfig(seed=-1).seed == -1  # torch accepts negative seeds


def test_dict_round_trip_and_unknown_keys() -> None:
    config = TrainConfig(hidden=256, epochs=3, optimizer="sgd", dropout=0.2, schedule="onecycle", seed=7)
    d = config.to_dict()
    assert d["hidden"] == 256 and d["optimizer"] == "sgd"
    assert TrainConfig.from_dict(d) == config
    assert TrainConfig.from_dict({**d, "from_the_future": 1}) == config
    assert TrainConfig.from_dict({"hidden": 64}) == TrainConfig(hidden=64)


def test_with_copies_and_config_is_frozen() -> None:
    config = TrainConfig()
    other = config.with_(epochs=2)
    assert other.epochs == 2 and config.epochs == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]
    assert hash(config) == hash(TrainConfig())
