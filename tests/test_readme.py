"""The README's set-up contract: exactly two commands, and CI runs the second one verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read_setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", setup, flags=re.S)]


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = read_setup_commands()
    assert len(commands) == 2
    install_and_run, install_and_test = commands
    assert install_and_run.startswith("python -m pip install torch==")
    assert install_and_run.endswith("altcap run")
    assert install_and_test.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert read_setup_commands()[1] in ci_lines
