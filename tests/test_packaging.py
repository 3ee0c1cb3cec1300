"""What an installed xreplay carries: its version, type information, license and project metadata."""

import pathlib
from importlib import metadata

import pytest

import xreplay
from xreplay.cli import main

ROOT = pathlib.Path(__file__).parents[1]


def test_version_flag_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"xreplay {metadata.version('xreplay')}"
    assert metadata.version("xreplay") == xreplay.__version__


def test_the_package_is_marked_typed():
    assert (pathlib.Path(xreplay.__file__).parent / "py.typed").is_file()


def test_metadata_names_license_urls_and_classifiers():
    meta = metadata.metadata("xreplay")
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    urls = dict(entry.split(", ", 1) for entry in meta.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues"} <= set(urls)
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3") for c in classifiers)


def test_no_source_file_is_over_400_lines():
    src = ROOT / "src" / "xreplay"
    long = {str(f.relative_to(src)): n for f in src.rglob("*.py") if (n := len(f.read_text().splitlines())) > 400}
    assert not long, f"split these modules along their seams: {long}"
