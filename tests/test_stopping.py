"""The hold-out rule's plateau pick (napari_specdip.stopping), without a network."""

from __future__ import annotations

import numpy as np
import pytest

from napari_specdip.stopping import PLATEAU_MIN_STEPS, HoldoutRule


def _feed(rule: HoldoutRule, values: np.ndarray, every: int = 5) -> int:
    """Feed values at every ``every`` iterations; the iteration the rule fired at, or 0."""
    for k, value in enumerate(values, 1):
        if rule.update(k * every, float(value)):
            return k * every
    return 0


def test_a_flat_noisy_minimum_returns_the_middle_of_its_plateau() -> None:
    rng = np.random.default_rng(0)
    # a fast fall, a flat stretch from 100 to 300 with noise, then the rise of overfitting
    t = np.arange(5, 1000, 5)
    values = np.exp(-t / 20) + np.where(t > 300, (t - 300) / 2000, 0) + rng.normal(0, 1e-3, t.size)
    rule = HoldoutRule(patience=300)
    fired = _feed(rule, values)
    assert fired == rule.best_iteration + 300
    assert 100 <= rule.best_iteration <= 300
    # the middle of 100..300, wherever in it the noise put the minimum
    assert abs(rule.returned_iteration - 200) <= 40
    assert rule.returned_iteration in rule.kept


def test_before_firing_and_without_the_plateau_it_is_the_minimum() -> None:
    t = np.arange(5, 400, 5)
    falling = 1.0 / t  # still falling when the run ends: the latest is the best
    rule = HoldoutRule(patience=300)
    assert _feed(rule, falling) == 0
    assert rule.returned_iteration == rule.best_iteration == 395
    flat = np.r_[np.linspace(2, 1, 20), np.ones(100) + 1e-4 * np.sin(np.arange(100))]
    off = HoldoutRule(patience=50, plateau=False)
    _feed(off, flat)
    assert off.returned_iteration == off.best_iteration and off.kept == {off.best_iteration}


def test_an_early_steep_minimum_is_returned_as_it_is() -> None:
    # fewer than PLATEAU_MIN_STEPS steps up to twice the minimum: the median change is
    # the descent's, and a plateau drawn from it would be far too wide
    values = [9.0, 4.0, 1.0, 3.0] + [5.0] * 80
    rule = HoldoutRule(patience=100)
    assert _feed(rule, np.asarray(values)) > 0
    assert rule.best_iteration == 15 and 2 * 15 // 5 < PLATEAU_MIN_STEPS
    assert rule.returned_iteration == 15


@pytest.mark.parametrize("max_kept", [1, 4, 16])
def test_the_kept_outputs_stay_within_their_cap(max_kept: int) -> None:
    rng = np.random.default_rng(1)
    values = 1.0 + rng.normal(0, 1e-3, 400)  # one long plateau: every step is near
    rule = HoldoutRule(patience=10_000, max_kept=max_kept)
    for k, value in enumerate(values, 1):
        rule.update(5 * k, float(value))
        assert len(rule.kept) <= max_kept and rule.best_iteration in rule.kept
    assert rule.returned_iteration in rule.kept | {rule.best_iteration}


def test_non_finite_values_are_not_kept() -> None:
    rule = HoldoutRule(patience=3)
    for k, value in enumerate([float("nan"), 2.0, float("inf"), 1.0, float("nan")], 1):
        rule.update(k, value)
        assert all(np.isfinite(rule._values[i]) for i in rule.kept)
    assert rule.best_iteration == 4
