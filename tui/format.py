"""Small, pure formatting helpers shared by the screens."""

from __future__ import annotations

from rich.text import Text


def number(n: int | float) -> str:
    """1234567 -> '1,234,567'."""
    return f"{n:,.0f}" if isinstance(n, float) else f"{n:,}"


def plural(n: int, noun: str) -> str:
    """plural(1, 'account') == '1 account'; plural(1234, 'request') == '1,234 requests'."""
    return f"{number(n)} {noun}{'' if n == 1 else 's'}"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def human_count(n: int) -> str:
    """134515008 -> '135M'."""
    for value, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= value:
            scaled = f"{n / value:.0f}" if n / value >= 10 else f"{n / value:.1f}".removesuffix(".0")
            return scaled + suffix
    return str(n)


def duration(seconds: float) -> str:
    """Uptime: '45s', '12m 03s', '3h 04m', '2d 05h'."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{s}s"


def when(iso: str | None) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM' (UTC, as stored), or '-'."""
    if not iso:
        return "-"
    return iso[:16].replace("T", " ")


def money(amount: float | None) -> str:
    return "-" if amount is None else f"{amount:,.2f}"


def first_line(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


ALERT_STYLES = {0: "", 75: "yellow", 90: "dark_orange", 100: "bold red"}


def alert_text(level: int) -> Text:
    """The 75/90/100% alert state as a coloured cell."""
    if not level:
        return Text("ok", style="green")
    return Text(f"{level}%", style=ALERT_STYLES.get(level, "bold red"))


def usage_bar(used: int, limit: int, width: int = 10) -> Text:
    """A text gauge of used/limit, coloured by the alert thresholds; past 100% it is full and red."""
    ratio = used / limit if limit else 0.0
    filled = min(width, round(ratio * width))
    style = "green"
    if ratio >= 1:
        style = "bold red"
    elif ratio >= 0.9:
        style = "dark_orange"
    elif ratio >= 0.75:
        style = "yellow"
    bar = Text("█" * filled, style=style)
    bar.append("░" * (width - filled), style="grey37")
    bar.append(f" {ratio * 100:3.0f}%", style=style)
    return bar


def shift_period(period: str, months: int) -> str:
    """'2026-03' shifted by months: shift_period('2026-01', -1) == '2025-12'."""
    year, month = (int(p) for p in period.split("-"))
    index = year * 12 + (month - 1) + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def fit_series(data: list[float], width: int) -> tuple[list[float], int]:
    """Fit a series into `width` columns with bars of equal width: returns the series (merged in
    groups, by maximum, when it has more points than columns) and the width to draw it at
    (a whole number of columns per point)."""
    if not data or width <= 0:
        return data or [0.0], max(width, 1)
    group = -(-len(data) // width)
    if group > 1:
        data = [max(data[i : i + group]) for i in range(0, len(data), group)]
    return data, (width // len(data)) * len(data)
