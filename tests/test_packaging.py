"""The properties/ YAML ships inside the wheel, and the plugin finds it there."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_properties_and_uses_them(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("recbole_pmmrec-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "recbole_pmmrec/properties/overall.yaml",
        "recbole_pmmrec/properties/model/PMMRec.yaml",
        "recbole_pmmrec/properties/dataset/ml-100k-text.yaml",
        "recbole_pmmrec/properties/overlays/cpu.yaml",
        "recbole_pmmrec/properties/overlays/levers/l3.yaml",
        "recbole_pmmrec/model/pmmrec.py",
        "recbole_pmmrec/data/dataset.py",
        "recbole_pmmrec/experiments/benchmark.py",
    ):
        assert expected in names
    # the unpacked wheel (no source checkout beside it) reads its own properties
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "from recbole_pmmrec.config import properties_dir, Config\n"
        "print(properties_dir())\n"
        "c = Config(model='PMMRec', dataset='ml-100k-text')\n"
        "print(c['fusion'], c['MAX_ITEM_LIST_LENGTH'], c['test_items'])\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0] == str(site / "recbole_pmmrec" / "properties")
    assert lines[1] == "merge_attention 20 all"
