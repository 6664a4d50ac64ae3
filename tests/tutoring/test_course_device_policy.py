"""The course's device-path policy (issue 22) as instructors and admins see it."""

import pytest
from rest_framework.test import APIClient

from tests.factories import CourseFactory, InstructorFactory

DEVICE_FIELDS = ("allow_full_pictures", "min_capture_fps", "attention_cone_degrees")


@pytest.mark.django_db
def test_the_course_api_shows_the_device_policy():
    teacher = InstructorFactory()
    CourseFactory(
        instructors=[teacher],
        allow_full_pictures=False,
        min_capture_fps=0.5,
        attention_cone_degrees=30,
    )
    c = APIClient()
    c.force_authenticate(teacher)
    (course,) = c.get("/api/courses/").json()["results"]
    assert {k: course[k] for k in DEVICE_FIELDS} == {
        "allow_full_pictures": False,
        "min_capture_fps": 0.5,
        "attention_cone_degrees": 30.0,
    }


@pytest.mark.django_db
def test_the_course_admin_shows_and_edits_the_device_policy(admin_client):
    course = CourseFactory()
    page = admin_client.get(f"/admin/tutoring/course/{course.pk}/change/")
    form = page.context["adminform"].form
    assert all(name in form.fields for name in DEVICE_FIELDS)
    listing = admin_client.get("/admin/tutoring/course/").content.decode()
    assert "allow_full_pictures" in listing and "attention_cone_degrees" in listing
