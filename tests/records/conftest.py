"""The tutoring tests' fixtures (a world of learners, instructors, courses and sessions, API
clients, recorded broadcasts), shared: records works on the same rows."""

from tests.tutoring.conftest import (  # noqa: F401  (fixtures, found by name)
    World,
    api,
    client_for,
    ended_broadcasts,
    sent,
    world,
)
