"""The package's imports point one way (tests/layering.py), and the checker itself catches
what it is there to catch."""

from __future__ import annotations

from pathlib import Path

from tests.layering import check

ROOT = Path(__file__).resolve().parents[1] / "airclass"


def test_imports_point_down_the_layers_and_form_no_cycle() -> None:
    violations = check(ROOT)
    assert not violations, "\n".join(str(v) for v in violations)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "airclass"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in {p.parent for p in root.rglob("*.py")}:
        (folder / "__init__.py").touch()
    return root


GOOD = {
    "config.py": "",
    "media/frames.py": "from airclass import config\n",
    "hls/muxer.py": "from airclass.media.frames import x\n",
    "rtmp/server.py": "from airclass.media import frames\n",
    "streams.py": "from airclass.hls import muxer\n",
    "cluster/link.py": "from airclass.streams import y\n",
    "web/app.py": "from airclass.cluster.link import z\nfrom . import views\n",
    "web/views.py": "import airclass.cluster.link\n",
    "slave.py": "from airclass.web.app import create\n",
}


def test_the_checker_passes_a_tree_that_keeps_the_rules(tmp_path: Path) -> None:
    assert check(_tree(tmp_path, GOOD)) == []


def test_the_checker_catches_an_import_up_the_layers(tmp_path: Path) -> None:
    bad = {**GOOD, "cluster/link.py": "def f():\n    from airclass.web.app import create\n"}
    found = [str(v) for v in check(_tree(tmp_path, bad))]
    assert "airclass.cluster.link imports airclass.web.app: web is above cluster" in found


def test_the_checker_catches_rtmp_and_hls_importing_each_other(tmp_path: Path) -> None:
    bad = {**GOOD, "rtmp/server.py": "from airclass.hls import muxer\n"}
    assert [str(v) for v in check(_tree(tmp_path, bad))] == [
        "airclass.rtmp.server imports airclass.hls.muxer: hls and rtmp are one layer"
    ]


def test_the_checker_catches_a_cycle_inside_a_package(tmp_path: Path) -> None:
    bad = {**GOOD, "web/views.py": "from typing import TYPE_CHECKING\n"
                                   "if TYPE_CHECKING:\n    from airclass.web.app import App\n"}
    assert [str(v) for v in check(_tree(tmp_path, bad))] == [
        "airclass.web.app imports airclass.web.views: "
        "cycle airclass.web.app → airclass.web.views → airclass.web.app"
    ]
