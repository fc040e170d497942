"""The one `environ.Env` every settings module reads from, and the project's paths."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parents[2]
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A local .env is a convenience for development; real deployments set the environment.
env_file = BASE_DIR / ".env"
if env_file.is_file():
    environ.Env.read_env(str(env_file))
