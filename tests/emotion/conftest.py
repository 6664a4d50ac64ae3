from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from ml.synth import background, scene
from tests.factories import (
    CourseFactory,
    InstructorFactory,
    LearnerSessionFactory,
    UserFactory,
    enroll,
)


def jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def face_frames(fer_val):
    """Webcam-sized JPEG frames, each holding one real FER2013 validation face the detector
    finds (checked), with a spread of expressions."""
    from ml.faces import detect_faces

    frames = []
    for i in range(len(fer_val)):
        if len(frames) == 60:
            break
        frame, _ = scene([fer_val.images[i]], side=200, seed=i)
        data = jpeg(frame)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if len(detect_faces(decoded)) == 1:
            frames.append(data)
    return frames


@pytest.fixture(scope="session")
def empty_frame():
    return jpeg(background(seed=11))


@pytest.fixture(autouse=True)
def _empty_memory_frame_store():
    """Each test starts with an empty in-process frame store (sockets of earlier tests may
    have left frames in a batch that their closed event loop never flushed)."""
    from emotion.framestore import _memory

    with _memory._lock:
        _memory._data.clear()


@dataclass
class Classroom:
    learner: object
    other_learner: object
    instructor: object
    other_instructor: object
    course: object
    session: object


@pytest.fixture
def classroom(db):
    learner, other = UserFactory(username="ana"), UserFactory(username="ben")
    teacher, stranger = (
        InstructorFactory(username="teacher"),
        InstructorFactory(username="stranger"),
    )
    course = CourseFactory(title="Live course", instructors=[teacher])
    CourseFactory(title="Other course", instructors=[stranger])
    enroll(course, learner, other)
    session = LearnerSessionFactory(learner=learner, course=course, consent=learner.consents.get())
    return Classroom(learner, other, teacher, stranger, course, session)
