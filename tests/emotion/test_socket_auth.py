"""The sockets' access rechecks, made together: many sockets' sign-ins and permissions in a
few queries, each socket still getting its own answer.

At 360 learners a process re-checked 72 sockets a second with three queries each (13 % of a
web process's samples); ``emotion.socket_auth.Rechecks`` gathers the sockets that come due
while a check runs and checks them in one go (``access_refusals``)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from emotion import consumers, socket_auth
from emotion import stream_protocol as wire
from tests.factories import LearnerSessionFactory, UserFactory, enroll


def _cookie_scope(user) -> dict:
    """What the cookie auth middleware puts in a socket's scope for a signed-in browser."""
    c = Client()
    c.force_login(user)
    return {"user": user, "session": SessionStore(c.cookies["sessionid"].value)}


def _stream(scope, session) -> consumers.SessionStreamConsumer:
    socket = consumers.SessionStreamConsumer()
    socket.scope, socket.session = scope, session
    return socket


def _live(scope, course) -> consumers.CourseLiveConsumer:
    socket = consumers.CourseLiveConsumer()
    socket.scope, socket.course_id = scope, course.pk
    return socket


@pytest.fixture
def learners(db, classroom):
    """Six learners of the course, each streaming their own session from a signed-in browser."""
    people = [UserFactory(username=f"learner-{i}") for i in range(6)]
    enroll(classroom.course, *people)
    return [
        _stream(
            _cookie_scope(p),
            LearnerSessionFactory(learner=p, course=classroom.course, consent=p.consents.get()),
        )
        for p in people
    ]


def test_each_socket_gets_its_own_answer_in_a_few_queries(
    classroom, learners, django_assert_max_num_queries
):
    ok, deactivated, signed_out, new_password, not_theirs, token = learners
    deactivated.scope["user"].is_active = False
    deactivated.scope["user"].save(update_fields=["is_active"])
    SessionStore(signed_out.scope["session"].session_key).flush()  # logout, elsewhere
    new_password.scope["user"].set_password("a-new-password-42")
    new_password.scope["user"].save()
    not_theirs.session = classroom.session  # ana's session, not this learner's
    token.scope = {"user": token.scope["user"]}  # token auth: no browser session
    live = _live(_cookie_scope(classroom.instructor), classroom.course)
    stranger = _live(_cookie_scope(classroom.other_instructor), classroom.course)

    sockets = [*learners, live, stranger]
    # sessions, users, the learners' sessions, and one per live view
    with django_assert_max_num_queries(5):
        found = socket_auth.access_refusals(sockets)

    stream_out = consumers.SessionStreamConsumer.SIGNED_OUT
    assert found == [
        None,
        stream_out,
        stream_out,
        stream_out,
        (wire.CLOSE_NOT_FOUND, "no such session of yours"),
        None,
        None,
        (wire.CLOSE_FORBIDDEN, consumers.NOT_INSTRUCTOR),
    ]


def test_a_socket_signed_in_as_someone_else_is_refused(classroom, learners):
    """The browser session now belongs to another user (signed out, then in as ben)."""
    first, *_ = learners
    other = _cookie_scope(classroom.other_learner)["session"]
    first.scope["session"] = other
    assert socket_auth.access_refusals([first]) == [consumers.SessionStreamConsumer.SIGNED_OUT]


@pytest.mark.django_db(transaction=True)
async def test_sockets_due_together_are_checked_together(classroom, learners, monkeypatch):
    """Six sockets come due at once: they are checked in one set (at most two, should the
    first start alone), and each gets its own answer."""
    batches = []
    real = consumers.SessionStreamConsumer.refusals_now

    def counted(sockets, users):
        batches.append(len(sockets))
        return real(sockets, users)

    monkeypatch.setattr(consumers.SessionStreamConsumer, "refusals_now", counted)
    gone = learners[2]
    gone.scope["user"].is_active = False
    await database_sync_to_async(gone.scope["user"].save)(update_fields=["is_active"])

    rechecks = socket_auth.rechecks()
    found = await asyncio.gather(*(rechecks.refusal(s) for s in learners))

    assert found == [None, None, consumers.SessionStreamConsumer.SIGNED_OUT, None, None, None]
    assert sum(batches) == 5 and len(batches) <= 2  # the signed-out one needs no session query


@pytest.mark.django_db(transaction=True)
async def test_a_failed_check_fails_each_waiting_socket(classroom, learners, monkeypatch):
    """The database away: every socket in the set gets the error (its receive path closes
    it as before); the next check runs again."""

    def away(sockets):
        raise ConnectionError("database away")

    monkeypatch.setattr(socket_auth, "access_refusals", away)
    rechecks = socket_auth.rechecks()
    found = await asyncio.gather(*(rechecks.refusal(s) for s in learners), return_exceptions=True)
    assert all(isinstance(e, ConnectionError) for e in found)
    monkeypatch.undo()
    assert await rechecks.refusal(learners[0]) is None
