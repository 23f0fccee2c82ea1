"""`snakemake -n` planning time for generated shot sheets of 10, 100 and 1000 shots.

Every shot of a generated sheet reads the same tiny demo plate (validation is cached per file, as on a
show where many shots share plate directories... each shot still gets its own full job graph of 7
rules). Prints seconds and the ratio to the 10-shot sheet measured in the same command; linear growth
means ratio ~ shots / 10 at most. Usage: python bench/plan.py [--sizes 10,100,1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

HEADER = "shot,plate,plate_colourspace,first_frame,last_frame,fps,environment,env_colourspace,version"


def plan_seconds(root: Path, n: int) -> float:
    rows = [f"b{i:05d},demo/sa/plate/sa_plate.####.exr,ACEScg,1001,1024,24,demo/sa/env/sa_env.####.exr,ACEScg,1"
            for i in range(n)]
    sheet = root / f"shots_{n}.csv"
    sheet.write_text("\n".join([HEADER, *rows]) + "\n")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--configfile",
           str(REPO / "config.yaml"), "--directory", str(root), "--cores", "2", "--config", f"shots={sheet.name}",
           "--dry-run", "--quiet", "all"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"snakemake -n failed for {n} shots:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from cinecomp.demo import make_demo_shot

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_demo_shot(root / "demo", "sa", 48, 28, 1001, 1024, plate_format="exr", env_kind="sequence")
        plan_seconds(root, 1)  # warm the page cache and Python's bytecode cache
        times = {n: plan_seconds(root, n) for n in sizes}
    base = times[sizes[0]]
    print(f"{'shots':>6} {'seconds':>8} {'ms/shot':>8} {'ratio vs ' + str(sizes[0]):>12} {'linear would be':>16}")
    for n, t in times.items():
        print(f"{n:>6} {t:8.2f} {1000 * t / n:8.2f} {t / base:12.2f} {n / sizes[0]:16.1f}")
    if args.json:
        print(json.dumps({"seconds": times, "ratio_vs_smallest": {n: t / base for n, t in times.items()}}))


if __name__ == "__main__":
    main()
