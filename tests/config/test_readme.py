"""README's configuration stays complete: every environment variable the code reads is named
in README.md (a deployment audit found six that were not)."""

import re

from tests.conftest import ROOT

TEST_ONLY = {"INFERENCE_TEST_DELAY_SECONDS"}  # a hook for the worker-failure tests
READS = re.compile(
    r"""(?:env\.\w+|env_path|os\.environ\.get|os\.getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def test_every_environment_variable_the_code_reads_is_in_the_readme():
    read = set()
    for package in ("config", "emotion", "tutoring", "ml"):
        for path in (ROOT / package).rglob("*.py"):
            read |= set(READS.findall(path.read_text()))
    assert {"DATABASE_URL", "ML_WEIGHTS", "DB_CONN_MAX_AGE"} <= read  # the pattern finds them
    readme = (ROOT / "README.md").read_text()
    missing = sorted(v for v in read - TEST_ONLY if not re.search(rf"\b{v}\b", readme))
    assert missing == []
