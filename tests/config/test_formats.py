"""One way to write numbers on every page and in CSV files (config.formats)."""

import math

import pytest
from django.template import Context, Template

from config.formats import coefficient, csv_number, duration, percent


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "—"), (math.nan, "—"), (0.0, "0 %"), (0.5061639521415006, "51 %"), (0.515, "52 %")],
)
def test_percent_rounds_halves_up_like_the_pages_script(value, text):
    assert percent(value) == text
    assert percent(1.0) == "100 %" and percent(0.125) == "13 %"  # Math.round(12.5) is 13


def test_duration_reads_in_hours_minutes_seconds():
    assert [duration(s) for s in (None, 0, 42.4, 65, 3600 + 125)] == [
        "—",
        "0 s",
        "42 s",
        "1 min 05 s",
        "1 h 02 min",
    ]


def test_csv_numbers_have_the_documented_precision():
    assert csv_number("engagement", 0.5061639521415006) == 0.506
    assert csv_number("band_share_engaged", 1 / 3) == 0.333
    assert csv_number("duration_s", 1234.5678) == 1234.6
    assert csv_number("n_frames", 12) == 12 and csv_number("band", "engaged") == "engaged"
    assert csv_number("presence_ratio", None) is None


def test_templates_use_the_same_helpers():
    html = Template(
        "{% load formats %}{{ x|percent }} · {{ s|duration }} · {{ k|coefficient }}"
    ).render(Context({"x": 0.52, "s": 61, "k": 0.8}))
    assert html == "52 % · 1 min 01 s · 0.80"


def test_a_coefficient_has_two_decimals():
    assert coefficient(0.6153846) == "0.62" and coefficient(-0.05) == "-0.05"
    assert coefficient(1) == "1.00" and coefficient(None) == "—"
    assert coefficient(float("nan")) == "—"


def test_csv_degrees_have_a_tenth():
    assert csv_number("head_motion", 17.320508075688775) == 17.3
    assert csv_number("head_motion", None) is None
