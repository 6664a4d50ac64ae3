"""Demo seeding (`manage.py seed_demo`, and `make run` through scripts/run.sh) creates what is
missing and never resets an existing account to the published demo password."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from knox.models import AuthToken

from tests.conftest import ROOT, _test_database_url
from tests.factories import UserFactory
from tutoring import services
from tutoring.models import Consent, Course, Enrollment, User

DEMO = services.DEMO_PASSWORD
DEMO_U = services.DEMO_USERS


def seed(capsys, *args) -> str:
    call_command("seed_demo", *args)
    return capsys.readouterr().out


def printed_usernames(out: str) -> set[str]:
    """The usernames of the credential table's rows (role, username, password, token)."""
    return {
        line.split()[1]
        for line in out.splitlines()
        if len(line.split()) == 4 and line.split()[2] == DEMO
    }


def test_an_operator_made_admin_keeps_its_password_and_flags(db, capsys):
    admin = UserFactory(
        username="admin",
        password="operator-Secret-9",
        role=User.Role.ADMIN,
        is_staff=True,
        is_superuser=False,
    )
    out = seed(capsys)
    admin.refresh_from_db()
    assert admin.check_password("operator-Secret-9") and not admin.check_password(DEMO)
    assert admin.is_staff and not admin.is_superuser
    assert not AuthToken.objects.filter(user=admin).exists()  # no API token made for it either
    assert "admin" not in printed_usernames(out)
    assert "Existing accounts left unchanged: admin" in out
    # the missing demo accounts were still created, and work with the demo password
    assert printed_usernames(out) == {
        "instructor1",
        "instructor2",
        "learner1",
        "learner2",
        "learner3",
    }
    assert User.objects.get(username="learner1").check_password(DEMO)


def test_an_inactive_or_demoted_demo_account_is_not_restored(db, capsys):
    seed(capsys)
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser  # created as the demo superuser
    User.objects.filter(pk=admin.pk).update(is_superuser=False, is_active=False)
    learner = User.objects.get(username="learner1")
    learner.set_password("learners-own-Pw-1")
    learner.save()
    out = seed(capsys)
    admin.refresh_from_db()
    learner.refresh_from_db()
    assert not admin.is_superuser and not admin.is_active
    assert learner.check_password("learners-own-Pw-1")
    assert DEMO not in out and printed_usernames(out) == set()


def test_a_demo_learner_who_revoked_consent_stays_revoked(db, capsys):
    seed(capsys)
    learner = User.objects.get(username="learner1")
    course = Course.objects.get(title="Algebra I")
    services.consent_revoke(learner=learner, course=course)
    seed(capsys)
    assert not Consent.objects.filter(
        learner=learner, course=course, revoked_at__isnull=True
    ).exists()
    assert Consent.objects.filter(learner=learner, course=course).count() == 1


def test_a_learner_removed_from_a_demo_course_is_not_enrolled_again(db, capsys):
    seed(capsys)
    learner = User.objects.get(username="learner2")
    Enrollment.objects.filter(learner=learner, course__title="Biology (engagement-only)").delete()
    seed(capsys)
    assert not Enrollment.objects.filter(
        learner=learner, course__title="Biology (engagement-only)"
    ).exists()


def test_a_missing_demo_account_is_created_again_with_its_enrollments(db, capsys):
    seed(capsys)
    User.objects.filter(username="learner3").delete()
    out = seed(capsys)
    assert printed_usernames(out) == {"learner3"}
    learner = User.objects.get(username="learner3")
    assert learner.check_password(DEMO) and AuthToken.objects.filter(user=learner).exists()
    assert Consent.objects.filter(
        learner=learner, course__title="Biology (engagement-only)", revoked_at__isnull=True
    ).exists()


def test_if_no_users_seeds_the_first_time_only(db, capsys):
    out = seed(capsys, "--if-no-users")
    assert len(printed_usernames(out)) == len(services.DEMO_USERS)
    User.objects.filter(username="learner3").delete()
    out = seed(capsys, "--if-no-users")
    assert "not seeded" in out and DEMO not in out
    assert not User.objects.filter(username="learner3").exists()


def test_if_no_users_creates_nothing_beside_an_operators_account(db, capsys):
    UserFactory(username="principal", role=User.Role.ADMIN, is_staff=True, is_superuser=True)
    out = seed(capsys, "--if-no-users")
    assert "not seeded" in out and DEMO not in out
    assert list(User.objects.values_list("username", flat=True)) == ["principal"]


# --- scripts/run.sh (`make run`) ------------------------------------------------------------


def fake_bin(tmp_path: Path) -> Path:
    """A BIN for scripts/run.sh: the real Python for manage.py, except the background job
    runner (tested in test_run_periodic) and the server, which only says it would serve."""
    b = tmp_path / "bin"
    b.mkdir()
    (b / "python").write_text(
        "#!/bin/sh\n"
        'if [ "$2" = run_periodic ]; then exit 0; fi\n'
        'if [ "$2" = config.serve ]; then echo "server would serve $*"; exit 0; fi\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    for f in b.iterdir():
        f.chmod(0o755)
    return b


@pytest.fixture
def run_sh(tmp_path):
    bin_dir = fake_bin(tmp_path)

    def run(**env) -> str:
        full = {
            **os.environ,
            "BIN": str(bin_dir),
            "DATABASE_URL": _test_database_url(),
            "REDIS_URL": "",
            "DATA_DIR": str(tmp_path / "data"),
            "SECRET_KEY": "test-run-sh",
            **env,
        }
        p = subprocess.run(
            ["bash", "scripts/run.sh"],
            cwd=ROOT,
            env=full,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert "server would serve" in p.stdout
        return p.stdout

    return run


@pytest.mark.django_db(transaction=True)
def test_make_run_seeds_an_empty_database_once_and_never_resets_an_account(run_sh):
    out = run_sh(DEMO="0")
    assert not User.objects.exists() and DEMO not in out  # DEMO=0: no demo data at all

    out = run_sh()  # first start: the demo accounts, printed once
    assert len(printed_usernames(out)) == len(services.DEMO_USERS)
    admin = User.objects.get(username="admin")
    admin.set_password("changed-by-Operator-7")
    admin.save()

    out = run_sh()  # a restart: no account is touched, no credential printed
    admin.refresh_from_db()
    assert admin.check_password("changed-by-Operator-7")
    assert DEMO not in out and "not seeded" in out


def test_demo_people_have_distinct_names(db, capsys):
    """Issue 23: every demo learner was 'Learner' (two identical tiles, 'Learner: absent')."""
    seed(capsys)
    names = [u.display_name for u in User.objects.filter(username__in=[n for n, *_ in DEMO_U])]
    assert len(names) == len(DEMO_U) == len(set(names))
    assert User.objects.get(username="learner1").display_name == "Amara Lindqvist"


def test_a_reseed_renames_only_a_demo_account_that_still_has_the_placeholder(db, capsys):
    seed(capsys)
    User.objects.filter(username__in=["learner1", "learner2"]).update(
        first_name="Learner", last_name=""
    )  # what earlier seeds made
    User.objects.filter(username="learner3").update(first_name="Learner", last_name="Own")
    out = seed(capsys)
    names = dict(User.objects.values_list("username", "first_name"))
    assert names["learner1"] == "Amara" and names["learner2"] == "Ben"
    assert User.objects.get(username="learner3").display_name == "Learner Own"  # set by hand
    assert "Placeholder names replaced by demo names: learner1, learner2" in out
    assert DEMO not in out  # nothing else about the accounts changed
