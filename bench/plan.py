"""`snakemake -n` planning time of cinecomp vs bare Snakemake with the same jobs, in one command.

For each size N (default 10, 100, 1000 shots) it writes a generated sheet (every shot reads the same tiny
demo plate and environment: 24 frames each, as a show where many shots share plate directories; each
shot still gets its own full job graph) and plans it with the real workflow (`--dry-run` of
`Snakefile`). Then it plans a *bare* Snakefile with exactly the same jobs and no logic: the same rules,
wildcards, input and output files (the plate frames as inputs of the ingest rules, directory outputs,
logs, benchmarks), the shots as a literal list, no sheet, no config, no params, no input functions.
The ratio cinecomp / bare is what the workflow's own logic costs (goal: <= 1.5; issue 10).
Both are run in the same command, alternately, best of --repeat runs each.

Usage: python bench/plan.py [--sizes 10,100,1000] [--repeat 2] [--json] [--profile N]
  --profile N   also print the top of a cProfile of planning N shots with cinecomp (where the rest goes)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # this checkout's cinecomp

from cinecomp.layout import REPO  # noqa: E402

HEADER = "shot,plate,plate_colourspace,first_frame,last_frame,fps,environment,env_colourspace,version"
FIRST, LAST = 1001, 1024
PLATE = "demo/sa/plate/sa_plate.{:04d}.exr"
ENV = "demo/sa/env/sa_env.{:04d}.exr"

# The bare workflow: cinecomp's job graph per shot (rules and files as rules/*.smk), no logic.
BARE = '''
SHOTS = {shots!r}
PLATE = {plate!r}
ENV = {env!r}
R = "results"


rule all:
    input:
        expand(R + "/{{shot}}/ingest/env", shot=SHOTS),
        expand(R + "/{{shot}}/light/light.json", shot=SHOTS),
        expand(R + "/{{shot}}/ingest/plate", shot=SHOTS),
        expand(R + "/{{shot}}/key", shot=SHOTS),
        expand(R + "/{{shot}}/masks", shot=SHOTS),
        expand(R + "/{{shot}}/depth", shot=SHOTS),
        expand(R + "/{{shot}}/composite", shot=SHOTS),
        expand(R + "/{{shot}}/v001/comp", shot=SHOTS),
        expand(R + "/{{shot}}/v001/review/{{shot}}_v001_daily.mp4", shot=SHOTS),
        expand(R + "/{{shot}}/v001/review/{{shot}}_v001_contact.png", shot=SHOTS),
        expand(R + "/{{shot}}/v001/review/{{shot}}_v001_cost.html", shot=SHOTS),



rule ingest_plate:
    input: PLATE
    output: directory(R + "/{{shot}}/ingest/plate")
    log: R + "/logs/ingest_plate/{{shot}}.log"
    benchmark: R + "/benchmarks/ingest_plate/{{shot}}.tsv"
    shell: "true"


rule ingest_env:
    input: ENV
    output: directory(R + "/{{shot}}/ingest/env")
    log: R + "/logs/ingest_env/{{shot}}.log"
    benchmark: R + "/benchmarks/ingest_env/{{shot}}.tsv"
    shell: "true"


rule key:
    input: R + "/{{shot}}/ingest/plate"
    output: directory(R + "/{{shot}}/key")
    log: R + "/logs/key/{{shot}}.log"
    benchmark: R + "/benchmarks/key/{{shot}}.tsv"
    shell: "true"


rule masks:
    input: R + "/{{shot}}/key"
    output: directory(R + "/{{shot}}/masks")
    log: R + "/logs/masks/{{shot}}.log"
    benchmark: R + "/benchmarks/masks/{{shot}}.tsv"
    shell: "true"


rule depth:
    input: R + "/{{shot}}/masks"
    output: directory(R + "/{{shot}}/depth")
    log: R + "/logs/depth/{{shot}}.log"
    benchmark: R + "/benchmarks/depth/{{shot}}.tsv"
    shell: "true"


rule light:
    input: env=R + "/{{shot}}/ingest/env"
    output: R + "/{{shot}}/light/light.json"
    log: R + "/logs/light/{{shot}}.log"
    benchmark: R + "/benchmarks/light/{{shot}}.tsv"
    shell: "true"


rule composite:
    input:
        key=R + "/{{shot}}/key",
        masks=R + "/{{shot}}/masks",
        depth=R + "/{{shot}}/depth",
        light=R + "/{{shot}}/light/light.json",
        env=R + "/{{shot}}/ingest/env",
    output: directory(R + "/{{shot}}/composite")
    log: R + "/logs/composite/{{shot}}.log"
    benchmark: R + "/benchmarks/composite/{{shot}}.tsv"
    shell: "true"


rule assemble:
    input:
        composite=R + "/{{shot}}/composite",
        key=R + "/{{shot}}/key",
        masks=R + "/{{shot}}/masks",
        depth=R + "/{{shot}}/depth",
    output: directory(R + "/{{shot}}/v{{version}}/comp")
    log: R + "/logs/assemble/{{shot}}_v{{version}}.log"
    benchmark: R + "/benchmarks/assemble/{{shot}}_v{{version}}.tsv"
    shell: "true"


rule daily:
    input: R + "/{{shot}}/v{{version}}/comp"
    output: R + "/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_daily.mp4"
    log: R + "/logs/daily/{{shot}}_v{{version}}.log"
    benchmark: R + "/benchmarks/daily/{{shot}}_v{{version}}.tsv"
    shell: "true"


rule contact_sheet:
    input: R + "/{{shot}}/v{{version}}/comp"
    output: R + "/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_contact.png"
    log: R + "/logs/contact_sheet/{{shot}}_v{{version}}.log"
    benchmark: R + "/benchmarks/contact_sheet/{{shot}}_v{{version}}.tsv"
    shell: "true"


rule cost:
    input:
        R + "/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_daily.mp4",
        R + "/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_contact.png",
    output: R + "/{{shot}}/v{{version}}/review/{{shot}}_v{{version}}_cost.html"
    log: R + "/logs/cost/{{shot}}_v{{version}}.log"
    benchmark: R + "/benchmarks/cost/{{shot}}_v{{version}}.tsv"
    shell: "true"
'''


def write_cinecomp(root: Path, n: int) -> list[str]:
    plate, env = PLATE.replace("{:04d}", "####"), ENV.replace("{:04d}", "####")
    rows = [f"b{i:05d},{plate},ACEScg,{FIRST},{LAST},24,{env},ACEScg,1" for i in range(n)]
    sheet = root / f"shots_{n}.csv"
    sheet.write_text("\n".join([HEADER, *rows]) + "\n")
    return ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config.yaml"),
            "--config", f"shots={sheet.name}"]


def write_bare(root: Path, n: int) -> list[str]:
    snakefile = root / f"Snakefile_bare_{n}"
    text = BARE.format(shots=[f"b{i:05d}" for i in range(n)],
                       plate=[PLATE.format(f) for f in range(FIRST, LAST + 1)],
                       env=[ENV.format(f) for f in range(FIRST, LAST + 1)])
    snakefile.write_text(text)
    return ["--snakefile", str(snakefile)]


def plan_seconds(root: Path, args: list[str], what: str) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "snakemake", *args, "--directory", str(root), "--cores", "2", "--dry-run",
           "--quiet", "rules"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"snakemake -n failed for {what}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    jobs = 0
    for line in r.stdout.splitlines():  # the job-count table: "total  <n>"
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total":
            jobs = int(parts[1])
    return dt, jobs


def profile(root: Path, n: int) -> None:
    import cProfile
    import pstats

    from snakemake.cli import main as snakemake_main

    args = [*write_cinecomp(root, n), "--directory", str(root), "--cores", "2", "--dry-run", "--quiet"]
    prof = cProfile.Profile()
    prof.enable()
    try:
        snakemake_main(args)
    except SystemExit:
        pass
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each, the best counts")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile cinecomp planning N shots")
    args = ap.parse_args()
    from cinecomp.synth.renderer import make_demo_shot

    sizes = [int(s) for s in args.sizes.split(",")]
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_demo_shot(root / "demo", "sa", 48, 28, FIRST, LAST, plate_format="exr", env_kind="sequence")
        plan_seconds(root, write_cinecomp(root, 1), "warm-up")  # page cache, bytecode caches
        plan_seconds(root, write_bare(root, 1), "warm-up")
        for n in sizes:
            ours, bare = write_cinecomp(root, n), write_bare(root, n)
            t_ours, t_bare, jobs = [], [], {}
            for _ in range(args.repeat):  # alternate, so drift in machine load hits both
                dt, jobs["cinecomp"] = plan_seconds(root, ours, f"cinecomp, {n} shots")
                t_ours.append(dt)
                dt, jobs["bare"] = plan_seconds(root, bare, f"bare, {n} shots")
                t_bare.append(dt)
            if jobs["cinecomp"] != jobs["bare"]:
                raise SystemExit(f"{n} shots: cinecomp plans {jobs['cinecomp']} jobs, bare {jobs['bare']}: "
                                 "the bare Snakefile no longer mirrors the workflow (update BARE)")
            result[n] = {"jobs": jobs["cinecomp"], "cinecomp_s": min(t_ours), "bare_s": min(t_bare),
                         "ratio": min(t_ours) / min(t_bare)}
        if args.profile:
            profile(root, args.profile)
    print(f"{'shots':>6} {'jobs':>6} {'cinecomp s':>11} {'bare s':>8} {'ratio':>6} {'cinecomp ms/shot':>17}")
    for n, r in result.items():
        print(f"{n:>6} {r['jobs']:>6} {r['cinecomp_s']:11.2f} {r['bare_s']:8.2f} {r['ratio']:6.2f} "
              f"{1000 * r['cinecomp_s'] / n:17.2f}")
    print("ratio = cinecomp / bare Snakemake with the same jobs and no logic (goal <= 1.5)")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
