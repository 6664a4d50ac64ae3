"""On a fresh clone (no DATA_DIR yet) any manage.py command works on the embedded default:
`migrate` failed with "unable to open database file" until `make run` had created .data/."""

import subprocess
import sys

from tests.conftest import ROOT


def test_migrate_creates_the_data_folder_with_its_parents(tmp_path):
    data_dir = tmp_path / "fresh" / "clone" / ".data"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SECRET_KEY": "x",
        "DATA_DIR": str(data_dir),
    }
    out = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert (data_dir / "db.sqlite3").stat().st_size > 0
