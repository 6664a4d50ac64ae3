"""Writes for the tutoring domain (HackSoft style: ``<entity>_<action>(*, ...)``)."""

from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token

from tutoring.models import User

DEMO_PASSWORD = "demo-pass-123"
DEMO_USERS = [
    ("admin", User.Role.ADMIN),
    ("instructor1", User.Role.INSTRUCTOR),
    ("instructor2", User.Role.INSTRUCTOR),
    ("learner1", User.Role.LEARNER),
    ("learner2", User.Role.LEARNER),
    ("learner3", User.Role.LEARNER),
]


@transaction.atomic
def user_create(*, username: str, password: str, role: str, **fields) -> User:
    user = User(username=username, role=role, **fields)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


@transaction.atomic
def demo_seed() -> dict:
    """Idempotent: existing demo users are kept (and their password reset to the demo one)."""
    users = []
    for username, role in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = user_create(username=username, password=DEMO_PASSWORD, role=role)
        else:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        if role == User.Role.ADMIN and not user.is_superuser:
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        token, _ = Token.objects.get_or_create(user=user)
        users.append(
            {
                "username": username,
                "role": role,
                "password": DEMO_PASSWORD,
                "token": token.key,
                "user": user,
            }
        )
    return {"users": users, "courses": []}
