"""The configuration reference stays complete: every environment variable the code reads is
named in docs/configuration.md (a deployment audit found six that were not); and README links
every document in docs/."""

import re

from tests.conftest import ROOT

TEST_ONLY = {"INFERENCE_TEST_DELAY_SECONDS"}  # a hook for the worker-failure tests
READS = re.compile(
    r"""(?:env\.\w+|env_path|os\.environ\.get|os\.getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def test_every_environment_variable_the_code_reads_is_documented():
    read = set()
    for package in ("config", "emotion", "tutoring", "records", "ml"):
        for path in (ROOT / package).rglob("*.py"):
            read |= set(READS.findall(path.read_text()))
    assert {"DATABASE_URL", "ML_WEIGHTS", "DB_CONN_MAX_AGE"} <= read  # the pattern finds them
    reference = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(v for v in read - TEST_ONLY if not re.search(rf"\b{v}\b", reference))
    assert missing == []


def test_the_readme_is_a_front_page_that_links_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{doc.name})" in readme, f"README does not link docs/{doc.name}"
