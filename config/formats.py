"""How numbers read on every page and in CSV files: one place, so a page cannot say "0.51"
where another says "52 %" (``static/js/format.js`` is the same for the pages' scripts)."""

from __future__ import annotations

import math

#: decimals a CSV cell keeps: seconds to a tenth, ratios and scores (0–1) to a thousandth,
#: angles (degrees) to a tenth
CSV_SECONDS_DECIMALS = 1
CSV_RATIO_DECIMALS = 3
CSV_DEGREES_DECIMALS = 1
#: the CSV columns in degrees (the spread of the head pose over a window)
CSV_DEGREES_COLUMNS = frozenset({"head_motion"})

NONE_TEXT = "—"


def percent(value: float | None) -> str:
    """A 0–1 ratio or score as a whole percent, ``"52 %"``; ``"—"`` for none. Halves round up,
    as JavaScript's ``Math.round`` does, so the server and the page never differ by one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE_TEXT
    return f"{math.floor(value * 100 + 0.5)} %"


def coefficient(value: float | None) -> str:
    """A coefficient that is not a share (Cohen's kappa, -1 to 1) to two decimals, ``"0.62"``;
    ``"—"`` for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE_TEXT
    return f"{value:.2f}"


def duration(seconds: float | None) -> str:
    """Seconds as ``"1 h 02 min"``, ``"12 min 05 s"`` or ``"42 s"``; ``"—"`` for none."""
    if seconds is None:
        return NONE_TEXT
    s = max(int(seconds + 0.5), 0)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def csv_number(column: str, value):
    """A CSV cell's number at the documented precision (docs/api.md): columns in seconds
    (``*_s``) to ``CSV_SECONDS_DECIMALS``, in degrees (``CSV_DEGREES_COLUMNS``) to
    ``CSV_DEGREES_DECIMALS``, other fractional numbers (ratios, engagement, shares, valence)
    to ``CSV_RATIO_DECIMALS``. Integers, text and empty cells are unchanged."""
    if not isinstance(value, float):
        return value
    if column in CSV_DEGREES_COLUMNS:
        return round(value, CSV_DEGREES_DECIMALS)
    decimals = CSV_SECONDS_DECIMALS if column.endswith("_s") else CSV_RATIO_DECIMALS
    return round(value, decimals)
