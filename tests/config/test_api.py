"""config.api: the CSV renderer escapes spreadsheet formulas (OWASP "CSV injection")."""

import csv
import io
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from config.api import csv_safe
from tests.factories import (
    CourseFactory,
    InstructorFactory,
    LearnerSessionFactory,
    ReadingFactory,
    UserFactory,
    enroll,
    probs_for,
)


@pytest.mark.parametrize(
    "value, cell",
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("+1+1", "'+1+1"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-", "'-"),
        ("=", "'="),
        # plain text and plain numbers, even in strings, stay as they are
        ("learner_a", "learner_a"),
        ("a=b", "a=b"),
        ("", ""),
        ("-0.25", "-0.25"),
        ("+3", "+3"),
        ("-1e-3", "-1e-3"),
        (-0.25, -0.25),
        (-3, -3),
        (Decimal("-1.5"), Decimal("-1.5")),
        (True, True),
        (None, None),
    ],
)
def test_csv_safe(value, cell):
    out = csv_safe(value)
    assert out == cell and type(out) is type(cell)


@pytest.fixture
def course_with_hostile_names(db):
    teacher = InstructorFactory(username="teacher")
    course = CourseFactory(title="Algebra", instructors=[teacher])
    # "-2+3" passes Django's username validator; "=cmd…" could come from any other path
    # that writes users (an import, the shell), so the renderer must not trust either.
    formula = UserFactory(username="-2+3")
    command = UserFactory(username="=cmd|' /C calc'!A0")
    plain = UserFactory(username="plain")
    enroll(course, formula, command, plain)
    for learner, label in ((formula, "angry"), (command, "sad"), (plain, "happy")):
        session = LearnerSessionFactory(
            learner=learner, course=course, consent=learner.consents.get()
        )
        for t in range(4):
            ReadingFactory(session=session, sequence=t, probs=probs_for(label))
    return teacher, course


def test_course_report_csv_escapes_formulas_and_keeps_numbers(course_with_hostile_names):
    teacher, course = course_with_hostile_names
    c = APIClient()
    c.force_authenticate(teacher)
    url = f"/api/courses/{course.pk}/report/"
    learners = {row["learner"]: row for row in c.get(url).json()["learners"]}
    r = c.get(f"{url}?format=csv")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    rows = {row["learner"]: row for row in csv.DictReader(io.StringIO(r.content.decode()))}
    assert set(rows) == {"'-2+3", "'=cmd|' /C calc'!A0", "plain"}
    for name, row in rows.items():
        expected = learners[name.removeprefix("'")]
        assert int(row["learner_id"]) == expected["learner_id"]
        assert int(row["n_frames"]) == expected["n_frames"] == 4
        # CSV numbers are rounded to the documented precision (3 decimals for ratios)
        assert float(row["engagement"]) == pytest.approx(expected["engagement"], abs=5e-4)
        # a real negative number (angry and sad frames have negative valence) is written as
        # the number, not escaped
        assert float(row["valence"]) == pytest.approx(expected["valence"], abs=5e-4)
        assert row["valence"] == str(round(expected["valence"], 3))
    assert float(rows["'-2+3"]["valence"]) < 0 and rows["'-2+3"]["valence"].startswith("-")
