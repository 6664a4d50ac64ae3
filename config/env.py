"""The one env object every setting is read through (django-environ)."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def env_path(name: str, default: Path) -> Path:
    value = env.str(name, default="")
    return Path(value).expanduser().resolve() if value else default
