"""TrainConfig: precision "auto" by default, time budgets validated, presets hold no hardware assumption."""

from __future__ import annotations

import math

import pytest

from mnistcore.config import PRECISIONS, PRESETS, TrainConfig


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
