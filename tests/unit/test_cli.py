"""The command line has manners: plain-text help with a description and examples for every
command, choices where a flag takes names, defaults shown, ``--version``, clear refusals;
and ``make help`` lists every target of the Makefile."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workbench import __version__, cli
from workbench.core import paths

ROOT = Path(__file__).resolve().parents[2]
RST = re.compile(r"``|:(func|mod|class|meth|data):`")  # reStructuredText in help text


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


PARSER = cli.build_parser()
COMMANDS = subcommands(PARSER)


def test_top_level_help_is_plain_text_with_examples():
    text = PARSER.format_help()
    assert not RST.search(text), text
    assert "examples:" in text and "workbench run" in text
    for name in COMMANDS:
        assert name in text, f"{name} missing from the top-level help"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_description_examples_and_plain_text(name):
    parser = COMMANDS[name]
    assert parser.description and len(parser.description) > 40, f"{name}: no description"
    text = parser.format_help()
    assert "examples:" in text, f"{name}: no examples in its epilog"
    assert f"workbench {name}" in text.split("examples:", 1)[1], f"{name}: examples of others?"
    assert not RST.search(text), f"{name}: reStructuredText in its help:\n{text}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_default_is_shown(name):
    parser = COMMANDS[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        default = action.default
        if not action.option_strings or action.help in (None, argparse.SUPPRESS):
            continue
        if default is None or default is False or default is argparse.SUPPRESS or default == "":
            continue
        text = formatter._expand_help(action)
        assert "default" in text and str(default) in text, f"{name} {action.option_strings}: {text}"


@pytest.mark.parametrize(
    ("command", "flag", "expected"),
    [
        ("run", "--profile", {"full", "smoke"}),
        ("assess", "--profile", {"default", "smoke"}),
        ("serve", "--log-level", {"critical", "error", "warning", "info", "debug"}),
    ],
)
def test_flags_that_take_names_have_choices(command, flag, expected):
    action = next(a for a in COMMANDS[command]._actions if flag in a.option_strings)
    assert set(action.choices) >= expected, action.choices


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["assess", "--model", "m", "--data", "d", "--out", "o", "--links", "lan,moon"], "moon"),
        (["assess", "--model", "m", "--data", "d", "--out", "o", "--profile", "full"], "choice"),
        (["serve", "--version-policy", "newest"], "latest:N"),
        (["serve", "--log-level", "loud"], "choice"),
        (["run", "--profile", "huge"], "choice"),
    ],
)
def test_bad_names_are_refused_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_links_are_parsed_into_names():
    args = PARSER.parse_args(
        ["assess", "--model", "m", "--data", "d", "--out", "o", "--links", "lan, 4g"]
    )
    assert args.links == ("lan", "4g")
    args = PARSER.parse_args(["serve", "--version-policy", "specific:1,3"])
    assert args.version_policy == "specific:1,3"


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"edge-cloud-workbench {__version__} ")
    assert str(paths.REPO_ROOT) in out  # this is a checkout


def test_version_matches_pyproject_and_metadata():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "workbench.__version__"}
    assert importlib.metadata.version("edge-cloud-workbench") == __version__


def test_the_other_workbench_on_pypi_is_named(monkeypatch, capsys):
    """An unrelated distribution named ``workbench`` installs the same import name."""

    class Other:
        version = "0.3.1"

    real = importlib.metadata.distribution

    def distribution(name):
        return Other() if name == "workbench" else real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    err = capsys.readouterr().err
    assert "workbench 0.3.1 is installed" in err and "separate virtualenv" in err


def test_no_warning_without_the_other_workbench(capsys):
    assert cli.other_workbench() is None  # this environment has only ours
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert "warning" not in capsys.readouterr().err


def test_notebooks_copies_out_and_keeps_your_changes(tmp_path, capsys):
    dest = tmp_path / "course"
    assert cli.main(["notebooks", str(dest)]) == 0
    shipped = sorted(p.name for p in paths.shipped_notebooks().glob(paths.NOTEBOOK_PATTERN))
    assert sorted(p.name for p in dest.glob("*.ipynb")) == shipped and len(shipped) >= 5
    assert (dest / "params" / "smoke.yaml").read_text() == (
        paths.shipped_notebooks() / "params" / "smoke.yaml"
    ).read_text()
    assert "Next: cd" in capsys.readouterr().out

    assert cli.main(["notebooks", str(dest)]) == 0  # again: nothing to do
    assert "0 file(s) copied" in capsys.readouterr().out

    edited = dest / shipped[0]
    edited.write_text(json.dumps({"cells": [], "mine": True}))
    assert cli.main(["notebooks", str(dest)]) == 2
    err = capsys.readouterr().err
    assert shipped[0] in err and "--force" in err and "nothing was copied" in err
    assert json.loads(edited.read_text())["mine"] is True  # kept

    assert cli.main(["notebooks", str(dest), "--force"]) == 0
    assert edited.read_bytes() == (paths.shipped_notebooks() / shipped[0]).read_bytes()


def test_notebooks_refuses_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert cli.main(["notebooks", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_run_without_notebooks_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS", str(tmp_path))
    assert cli.main(["run", "--no-estimate"]) == 2
    err = capsys.readouterr().err
    assert "no numbered notebooks" in err and "workbench notebooks ." in err


def test_run_names_an_unknown_notebook(capsys):
    assert cli.main(["run", "--no-estimate", "99-nothing"]) == 2
    err = capsys.readouterr().err
    assert "99-nothing" in err and "01-edge-iris-knn" in err


def test_site_before_any_run_says_what_to_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORKBENCH_REPORTS", str(tmp_path / "reports"))
    assert cli.main(["site"]) == 2
    assert "make run" in capsys.readouterr().err


def makefile_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    return [
        m[1]
        for m in re.finditer(r"^([a-zA-Z0-9][a-zA-Z0-9_-]*):(?!=)", text, re.M)
        if m[1] != "PHONY"
    ]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target():
    targets = makefile_targets()
    assert {"setup", "run", "test", "test-fast", "lab", "report", "docs", "clean", "lock"} <= set(
        targets
    )
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("make ")}
    missing = sorted(set(targets) - listed)
    assert not missing, f"make help omits {missing}: give each target a '## what it does' comment"
