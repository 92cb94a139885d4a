"""The project's own contracts: dependency lists agree, the README's two commands exist."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return re.split(r"[<>=!\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("book", "dev"):
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    wanted -= {"sam2"}  # installed after torch without build isolation, as the file says
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    have = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            have |= {_name(r) for r in dep["pip"]}
        else:
            have.add(_name(dep))
    have -= {"python", "pip"}
    assert wanted == have


def test_readme_quick_start_is_two_make_targets():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["make book", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book: setup", makefile, re.M) and re.search(r"^test: setup", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
