"""Load test on the test cluster (a closing check, not a timed test): N tiny shots submitted at once.

    tests/slurm/cluster.sh start
    .venv/bin/python tests/slurm/load_test.py [--shots 30] [--dir /tmp/cinecomp-load]

Makes N tiny shots (48x28, 5 frames, plates as EXR/PNG/MP4 in turn), submits the controller with
`cinecomp submit`, waits for it, then checks that nothing was lost: every expected comp frame of every
shot is present and reads back complete (every layer, the full data window), every daily and contact
sheet is there, no half-written temporary file is left, and `cinecomp status` says done for all.
Prints the wall time, the number of SLURM jobs and the result; exit 1 on any loss.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the helpers the tests share

from helpers import FIRST, LAST, TINY, cinecomp, exr_pixels, make_tiny_shot, sheet_row, write_sheet  # noqa: E402

KINDS = [(fmt, env) for _, fmt, env in TINY]  # plate format, environment kind, in turn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, default=30)
    ap.add_argument("--dir", default="/tmp/cinecomp-load")
    ap.add_argument("--timeout", type=int, default=3600)
    args = ap.parse_args()
    root = Path(args.dir).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rows = []
    for i in range(args.shots):
        shot = f"ld{i:03d}"
        fmt, env = KINDS[i % len(KINDS)]
        make_tiny_shot(root, shot, fmt, env)
        rows.append(sheet_row(shot, fmt, env))
    write_sheet(root, rows)
    t0 = time.time()
    r = cinecomp(root, "submit", "--sheet", "shots.csv", "--time", "2:00:00", "--",
                 "--slurm-init-seconds-before-status-checks", "5")
    print(r.stdout + r.stderr, end="")
    job = re.search(r"submitted controller job (\d+)", r.stdout).group(1)
    state = "PENDING"
    while time.time() - t0 < args.timeout:
        out = subprocess.run(["sacct", "-X", "-P", "-n", "-j", job, "-o", "State"], capture_output=True,
                             text=True).stdout.split()
        state = out[0] if out else "PENDING"
        if state not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING"):
            break
        time.sleep(5)
    wall = time.time() - t0
    jobs = subprocess.run(["sacct", "-a", "-X", "-P", "-n", "-S", "now-1days", "-o", "WorkDir,State"],
                          capture_output=True, text=True).stdout.splitlines()
    mine = [j.split("|")[1] for j in jobs if j.split("|")[0] == str(root)]
    problems = []
    for i in range(args.shots):
        shot = f"ld{i:03d}"
        comp = root / "results" / shot / "v001" / "comp"
        for f in range(FIRST, LAST + 1):
            p = comp / f"{shot}_comp_v001.{f:04d}.exr"
            if not p.is_file():
                problems.append(f"missing {p}")
                continue
            try:
                ch = exr_pixels(p)
                if not {"R", "G", "B", "A", "depth.Z", "mask.character"} <= set(ch) or ch["R"].shape != (28, 48):
                    problems.append(f"incomplete {p}: {sorted(ch)} {ch['R'].shape}")
            except Exception as exc:  # noqa: BLE001 (any unreadable file is a loss)
                problems.append(f"unreadable {p}: {exc}")
        for name in (f"{shot}_v001_daily.mp4", f"{shot}_v001_contact.png", f"{shot}_v001_cost.html"):
            q = root / "results" / shot / "v001" / "review" / name
            if not q.is_file() or q.stat().st_size == 0:
                problems.append(f"missing {q}")
    temps = [str(p) for p in (root / "results").rglob(".*") if ".tmp" in p.name]
    problems += [f"half-written {t}" for t in temps]
    st = cinecomp(root, "status", "--sheet", "shots.csv", "--json")
    states = {s["shot"]: s["state"] for s in json.loads(st.stdout)["shots"]} if st.stdout.strip() else {}
    not_done = {s: v for s, v in states.items() if v != "done"}
    if len(states) != args.shots or not_done:
        problems.append(f"status not done for all: {not_done or st.stderr[-500:]}")
    print(f"load test: {args.shots} shots, controller {job} {state}, {len(mine)} SLURM jobs "
          f"({sum(1 for s in mine if s == 'COMPLETED')} completed), {wall:.0f} s wall; "
          f"frames expected {args.shots * (LAST - FIRST + 1)}; status: "
          f"{sum(1 for v in states.values() if v == 'done')} done; problems: {len(problems)}")
    for p in problems[:30]:
        print("  " + p)
    return 1 if problems or state != "COMPLETED" else 0


if __name__ == "__main__":
    sys.exit(main())
