"""Keeps `make bench` honest without timing anything.

Every benchmark in benchmarks/ (what `make bench` runs) has a `main`, a docstring that names
the baseline it is measured against, a quick size in the Makefile whose options it accepts,
and a row in the README's table of latest figures. The cheapest benchmarks also run at
their smallest size, each in a fresh process as `make bench` runs them, and must exit 0 and
print a ratio line with a positive number (slow: each pays for importing torch and its
models; they still run in CI).
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
HELPERS = {"motion_data"}  # imported by the motion benchmarks, not run by `make bench`


def benchmarks() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in HELPERS and not p.stem.startswith("_"))


def quick_args() -> dict[str, str]:
    """BENCH_QUICK_<name> := <args> from the Makefile."""
    text = (ROOT / "Makefile").read_text()
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^BENCH_QUICK_(\w+)\s*:=\s*(.*)$", text, re.M)}


def test_there_are_benchmarks_for_each_figure_of_the_issue():
    # issue 18 item 2: curation graph, landmark stage, SMPL-X fit, shard reading, both trainers,
    # generation, evaluation, scaling
    for name in ("curation", "curation_cost", "smplx_fit", "windows", "motion", "video", "eval", "scaling"):
        assert name in benchmarks(), f"benchmarks/{name}.py is missing"


@pytest.mark.parametrize("name", benchmarks())
def test_benchmark_has_main_docstring_naming_its_baseline_and_quick_args(name):
    source = (BENCH / f"{name}.py").read_text()
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    assert len(doc) > 80, f"benchmarks/{name}.py: no docstring saying what it measures"
    assert re.search(r"baseline|against|ceiling|in the same run| vs\.? ", doc, re.I), \
        f"benchmarks/{name}.py: the docstring does not name the baseline it is measured against"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{name}: no main()"
    assert '__name__ == "__main__"' in source, f"{name}: not runnable as `python -m benchmarks.{name}`"
    args = quick_args()
    assert name in args, f"Makefile: no BENCH_QUICK_{name} (the size `make bench` runs it at)"
    for opt in re.findall(r"(--[\w-]+)", args[name]):
        assert f'"{opt}"' in source, f"Makefile BENCH_QUICK_{name} passes {opt}, which benchmarks/{name}.py has not"


def test_readme_table_has_a_row_for_every_benchmark():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### Latest benchmark figures", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    for name in benchmarks():
        assert any(line.startswith(f"| `{name}.py`") for line in rows), f"README table: no row for {name}.py"
    assert re.search(r"`make bench` (takes|took)", table), "README: what `make bench` takes is not stated"


RATIO = re.compile(r"^.*\bratio\b.*?(\d+(?:\.\d+)?)x", re.I | re.M)

# the smallest sizes that still print their ratio (make bench's quick sizes are larger)
SMALLEST = {
    "person_filter": ["--seconds", "2", "--size", "256", "--repeats", "1"],
    "windows": ["--clips", "2", "--seconds", "2", "--frames", "8", "--size", "64", "--windows-per-clip", "2"],
    "video": ["--size", "64", "--frames", "4", "--skip-training"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_benchmark_runs_at_its_smallest_size_and_prints_a_ratio(name, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *SMALLEST[name]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"benchmarks/{name}.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    ratios = [float(m.group(1)) for m in RATIO.finditer(proc.stdout)]
    assert ratios, f"benchmarks/{name}.py printed no ratio line:\n{proc.stdout[-2000:]}"
    assert all(math.isfinite(r) and r > 0 for r in ratios), ratios
