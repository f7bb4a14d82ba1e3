"""TrainConfig: precision "auto" by default, time budgets validated, presets hold no hardware assumption."""

from __future__ import annotations

import math

import pytest

from mnistcore.config import AUGMENT_STYLES, PRECISIONS, PRESETS, TrainConfig


def test_precision_defaults_to_auto_and_presets_do_not_hard_code_bf16() -> None:
    assert PRECISIONS == ("auto", "fp32", "bf16")
    assert TrainConfig().precision == "auto"
    # bf16 is ~100x slower on AVX2-only CPUs: no preset may assume a CPU with AMX.
    assert all(p.precision == "auto" for p in PRESETS.values())
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize("budget", [None, 1, 60, 150.5, 24 * 3600])
def test_budget_seconds_accepted(budget: float | None) -> None:
    config = TrainConfig(budget_seconds=budget)
    assert config.budget_seconds == budget
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("budget", [0, 0.5, -3, 24 * 3600 + 1, math.nan, math.inf, True, "60", [60]])
def test_bad_budgets_refused(budget: object) -> None:
    with pytest.raises(ValueError, match="budget_seconds"):
        TrainConfig(budget_seconds=budget)  # type: ignore[arg-type]


def test_saved_configs_from_before_budgets_and_auto_still_load() -> None:
    old = {"hidden": 64, "epochs": 3, "precision": "bf16", "report_every": 10}
    config = TrainConfig.from_dict(old)
    assert (config.precision, config.budget_seconds) == ("bf16", None)
    assert TrainConfig.from_dict({"hidden": 64}).precision == "auto"


def test_draw_preset_is_one_hidden_layer_with_the_draw_distortions_and_the_cli_default_is_unchanged() -> None:
    draw = PRESETS["draw"]
    assert TrainConfig.from_dict(draw.to_dict()) == draw
    assert draw.augment and draw.augment_style == "draw" and 16 <= draw.hidden <= 2048
    assert draw.holdout == TrainConfig().holdout  # calibration and OOD are fitted per run, as for every preset
    # The CLI's default stays the seed recipe, so seed comparisons keep their meaning.
    assert PRESETS["default"] == TrainConfig() and TrainConfig().augment_style == "mnist"
    assert (TrainConfig().hidden, TrainConfig().epochs, TrainConfig().augment) == (128, 5, False)


def test_augment_style_is_validated_and_old_runs_load_with_the_mnist_style() -> None:
    assert AUGMENT_STYLES == ("mnist", "draw")
    for bad in ("DRAW", "", None, 1):
        with pytest.raises(ValueError, match="augment_style must be one of"):
            TrainConfig(augment_style=bad)  # type: ignore[arg-type]
    assert TrainConfig.from_dict({"hidden": 64, "augment": True}).augment_style == "mnist"
