"""scripts/check_commits.py, run by .ci/run: subject of at most 72 characters, blank line, body."""

import importlib.util

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("check_commits", ROOT / "scripts/check_commits.py")
check_commits = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_commits)


def test_a_short_subject_a_blank_line_and_a_body_pass():
    assert check_commits.problems("Serve with uvicorn\n\nBecause daphne buffers bodies.\n") == []
    assert check_commits.problems("Subject only\n") == []


def test_long_subjects_and_a_missing_blank_line_are_named():
    assert check_commits.problems("x" * 73 + "\n\nbody") == [
        "subject is 73 characters (at most 72)"
    ]
    assert check_commits.problems("Subject\nbody right after") == [
        "no blank line after the subject"
    ]
    assert check_commits.problems("\n\nbody") == ["empty subject"]


def test_the_history_since_the_rule_passes():
    assert check_commits.main(["check_commits"]) == 0
