"""The TUI's small pure helpers."""

from __future__ import annotations

from tui.app import key_label
from tui.format import duration, fit_series, human_count, plural, shift_period, usage_bar


def test_fit_series_gives_equal_bars() -> None:
    assert fit_series([1.0, 2.0, 3.0], 10) == ([1.0, 2.0, 3.0], 9)  # 3 columns per point
    data, width = fit_series([float(i) for i in range(60)], 52)  # too many points: merged in pairs by max
    assert data == [float(i) for i in range(1, 60, 2)] and width == 52 // 30 * 30
    assert fit_series([], 20) == ([0.0], 20)


def test_periods_durations_counts() -> None:
    assert shift_period("2026-01", -1) == "2025-12"
    assert shift_period("2026-12", 1) == "2027-01"
    assert (
        duration(45) == "45s"
        and duration(3 * 3600 + 25 * 60 + 7) == "3h 25m"
        and duration(2 * 86400 + 3600) == "2d 01h"
    )
    assert human_count(134_515_008) == "135M" and human_count(2_000_000) == "2M" and human_count(10_000) == "10K"
    assert plural(1, "account") == "1 account" and plural(1234, "request") == "1,234 requests"


def test_usage_bar_colours_follow_the_alert_thresholds() -> None:
    assert usage_bar(50, 100).style == "green"
    assert usage_bar(80, 100).style == "yellow"
    assert usage_bar(95, 100).style == "dark_orange"
    assert usage_bar(150, 100).plain.startswith("█" * 10)


def test_key_labels() -> None:
    assert key_label("ctrl+r,f5") == "Ctrl+R / F5"
    assert key_label("f1,question_mark") == "F1 / ?"
    assert key_label("d,delete") == "d / Del"
    assert key_label("left_square_bracket") == "["
