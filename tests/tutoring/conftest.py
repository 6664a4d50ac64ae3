from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from tests.factories import (
    AdminFactory,
    CourseFactory,
    InstructorFactory,
    LearnerSessionFactory,
    UserFactory,
    enroll,
)


@dataclass
class World:
    learner_a: object
    learner_b: object
    instructor: object
    other_instructor: object
    admin: object
    course: object
    other_course: object
    session_a: object
    session_b: object

    def actor(self, name):
        return None if name == "anonymous" else getattr(self, name)


@pytest.fixture
def world(db):
    la, lb = UserFactory(username="learner_a"), UserFactory(username="learner_b")
    i1, i2 = InstructorFactory(username="teacher_1"), InstructorFactory(username="teacher_2")
    course = CourseFactory(title="Algebra", instructors=[i1])
    other = CourseFactory(title="Chemistry", instructors=[i2])
    enroll(course, la, lb)
    lc = UserFactory(username="learner_c")
    enroll(other, lc)
    sa = LearnerSessionFactory(learner=la, course=course, consent=la.consents.get())
    sb = LearnerSessionFactory(learner=lb, course=course, consent=lb.consents.get())
    return World(la, lb, i1, i2, AdminFactory(), course, other, sa, sb)


def client_for(user) -> APIClient:
    c = APIClient()
    if user is not None:
        c.force_authenticate(user)
    return c


@pytest.fixture
def api():
    return client_for


@pytest.fixture
def sent(monkeypatch):
    """Every live broadcast the tutoring services make: (group, event type, payload)."""
    calls = []

    def record(group, event_type, payload):
        calls.append((group, event_type, payload))
        return True

    monkeypatch.setattr("tutoring.services.group_send", record)
    return calls


def ended_broadcasts(sent, session):
    return {
        (group, payload["reason"])
        for group, event_type, payload in sent
        if event_type == "session.ended" and payload["session"] == session.pk
    }
