"""Factories for the domain models (factory_boy)."""

import functools
from datetime import timedelta

import factory
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from emotion.models import Reading
from tutoring.models import Consent, Course, Enrollment, LearnerSession, User

PASSWORD = "pw-123456"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    role = User.Role.LEARNER
    password = PASSWORD

    @classmethod
    def _create(cls, model_class, *args, password=PASSWORD, **kwargs):
        if password != PASSWORD:
            return model_class.objects.create_user(*args, password=password, **kwargs)
        # PBKDF2 costs 0.25 s a hash on 2 cores, 1.75 s for a fixture of seven users: the default
        # password is hashed once and its hash (salt included) stored for every user; it is a
        # real hash of the default hasher, so logins through any server process check it
        user = model_class.objects.create_user(*args, password=None, **kwargs)
        user.password = _default_password_hash()
        user.save(update_fields=["password"])
        return user


@functools.cache
def _default_password_hash() -> str:
    return make_password(PASSWORD)


class InstructorFactory(UserFactory):
    username = factory.Sequence(lambda n: f"instructor{n}")
    role = User.Role.INSTRUCTOR


class AdminFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    role = User.Role.ADMIN


class CourseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Course
        skip_postgeneration_save = True

    title = factory.Sequence(lambda n: f"Course {n}")

    @factory.post_generation
    def instructors(self, create, extracted, **kwargs):
        if create and extracted:
            self.instructors.set(extracted)


class EnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Enrollment

    course = factory.SubFactory(CourseFactory)
    learner = factory.SubFactory(UserFactory)


class ConsentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Consent

    learner = factory.SubFactory(UserFactory)
    course = factory.SubFactory(CourseFactory)
    engagement = True
    emotion = factory.LazyAttribute(lambda o: o.course.emotion_inference_enabled)
    policy_version = "2026-11"
    granted_at = factory.LazyFunction(timezone.now)


class LearnerSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = LearnerSession

    learner = factory.SubFactory(UserFactory)
    course = factory.SubFactory(CourseFactory)
    consent = factory.SubFactory(
        ConsentFactory,
        learner=factory.SelfAttribute("..learner"),
        course=factory.SelfAttribute("..course"),
    )
    started_at = factory.LazyFunction(timezone.now)
    emotion_enabled = factory.LazyAttribute(
        lambda o: o.course.emotion_inference_enabled and o.consent.emotion
    )


def probs_for(label: str, p: float = 1.0) -> dict:
    from ml.classes import EMOTIONS

    rest = (1 - p) / (len(EMOTIONS) - 1)
    return {e: (p if e == label else rest) for e in EMOTIONS}


class ReadingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reading

    session = factory.SubFactory(LearnerSessionFactory)
    sequence = factory.Sequence(int)
    captured_at = factory.LazyAttribute(
        lambda o: o.session.started_at + timedelta(seconds=o.sequence)
    )
    received_at = factory.LazyAttribute(lambda o: o.captured_at)
    analysed_at = factory.LazyAttribute(lambda o: o.captured_at)
    face_found = True
    cues = factory.LazyAttribute(
        lambda o: {"center_offset": 0.0, "area_fraction": 0.05} if o.face_found else {}
    )
    attentive = factory.LazyAttribute(lambda o: o.face_found)
    probs = factory.LazyAttribute(
        lambda o: probs_for("neutral") if o.face_found and o.session.emotion_enabled else None
    )
    label = factory.LazyAttribute(lambda o: max(o.probs, key=o.probs.get) if o.probs else None)
    confidence = factory.LazyAttribute(lambda o: max(o.probs.values()) if o.probs else None)


def enroll(course, *learners, consent=True, emotion=None):
    for learner in learners:
        EnrollmentFactory(course=course, learner=learner)
        if consent:
            ConsentFactory(
                course=course,
                learner=learner,
                emotion=course.emotion_inference_enabled if emotion is None else emotion,
            )


def api_token(user) -> str:
    """A new API token's key for ``user`` (the one moment a key exists: knox stores a digest)."""
    from tutoring.services import api_token_create

    return api_token_create(user=user)[1]
