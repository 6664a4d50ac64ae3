"""The recording page's config for the on-device face path (issue 22)."""

import json
import re

import pytest

from tests.factories import (
    ConsentFactory,
    CourseFactory,
    LearnerSessionFactory,
    UserFactory,
    enroll,
)

pytestmark = pytest.mark.django_db


def page_config(client, session, query: str = "") -> dict:
    client.force_login(session.learner)
    r = client.get(f"/learn/sessions/{session.pk}/{query}")
    assert r.status_code == 200
    m = re.search(
        r'<script id="recorder-config" type="application/json">(.*?)</script>', r.text, re.S
    )
    return json.loads(m.group(1))


def session_for(*, emotion: bool, **course_fields):
    learner = UserFactory()
    course = CourseFactory(**course_fields)
    enroll(course, learner, consent=False)
    consent = ConsentFactory(course=course, learner=learner, emotion=emotion)
    return LearnerSessionFactory(learner=learner, course=course, consent=consent)


def test_the_page_carries_the_course_device_policy_and_our_model_url(client):
    s = session_for(
        emotion=True, allow_full_pictures=False, min_capture_fps=0.5, attention_cone_degrees=30
    )
    device = page_config(client, s)["device"]
    assert device == {
        "modelBase": "/static/vendor/human/models/",
        "backend": "webgl",
        "allow_full_pictures": False,
        "min_capture_fps": 0.5,
        "capture_fps": s.course.capture_fps,
        "attention_cone_degrees": 30,
        "send_crop": True,
    }


@pytest.mark.parametrize("emotion, course_emotion", [(False, True), (True, False), (False, False)])
def test_no_crop_without_expression_consent_or_in_engagement_only_courses(
    client, emotion, course_emotion
):
    s = session_for(emotion=emotion, emotion_inference_enabled=course_emotion)
    assert page_config(client, s)["device"]["send_crop"] is False


@pytest.mark.parametrize(
    "query, expected",
    [
        ("?device_models=/static/elsewhere/", "/static/elsewhere/"),
        ("?device_models=//evil.example/models/", "/static/vendor/human/models/"),
        ("?device_models=https://evil.example/models/", "/static/vendor/human/models/"),
    ],
)
def test_the_model_folder_hook_takes_same_site_paths_only(client, query, expected):
    s = session_for(emotion=True)
    assert page_config(client, s, query)["device"]["modelBase"] == expected
