"""What ships: the service's wheel holds the service and its spec, never the stand-ins
(a distribution of their own, dev/); `placement-manager dev` without them says what to
install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--wheel-dir", str(out), str(source)],
        check=True,
        cwd=ROOT,
    )
    [wheel] = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_the_service_wheel_holds_the_service_and_not_the_stand_ins(tmp_path: Path) -> None:
    names = build_wheel(ROOT, tmp_path).namelist()
    assert "placement/openapi.yaml" in names
    assert "placement/bootstrap.py" in names
    assert not [n for n in names if "standin" in n or "placement_dev" in n or "devstack" in n]
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


def test_the_dev_wheel_holds_the_stand_ins_only(tmp_path: Path) -> None:
    names = build_wheel(ROOT / "dev", tmp_path).namelist()
    assert "placement_dev/standins/default-rules.yaml" in names
    assert "placement_dev/devstack.py" in names
    assert not [n for n in names if n.startswith("placement/")]


def test_dev_without_the_dev_distribution_says_what_to_install() -> None:
    hide = "import sys; sys.modules['placement_dev'] = None"  # as if not installed
    run = "from placement.cli import main; sys.exit(main(['dev']))"
    done = subprocess.run(
        [sys.executable, "-c", f"{hide}; {run}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("placement-manager: `placement-manager dev` needs the development")
    assert "pip install ./dev" in line
