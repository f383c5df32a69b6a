"""Benchmark of a directory of centres: load and proof time of `check-rules` and of create_app.

Run by hand (pytest does not collect it):

    python tests/benchmarks/bench_centres.py                      # 1,000 centres: 900 plain, 100 with rules
    python tests/benchmarks/bench_centres.py --all-distinct 1000  # and 1,000 centres, each with its own rules

It copies the shipped rules/ to a temporary folder and writes the centre files there: the
shipped centre's identity under other names, and for the centres with rules of their own one
house rule each (stricter on pregnancy, on firm pressure, on neck tension or on deep tissue for
a pregnancy) drawn from `--distinct` different sets. Then, each in a fresh process:

* `screening check-rules --rules-dir ...` (wall time, and the summary it prints);
* create_app on an empty instance folder (cold: the shared rules and each distinct set of
  centre rules are proved), then again in a new process once the verdict is on disk (cached);
  for each, the time to load the rule files and the centre files alone.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from screening.core.rules import default_rules_dir

SHIPPED = "exemple-barcelona.toml"
# (when, outcome, about): each reads only answers and literals the shared rules know, and raises
VARIANTS = [
    ('{ var = "pregnant", in = ["yes", "not_sure"] }', "consult_professional", "pregnant"),
    ('{ var = "preferred_intensity", equals = "firm" }', "tell_centre", None),
    ('{ var = "tension_areas", contains = "neck" }', "tell_centre", None),
    ('{ all = [{ var = "service.slug", equals = "deep-tissue-massage" }, '
     '{ var = "pregnant", in = ["yes", "not_sure"] }] }', "consult_professional", "pregnant"),
]

CHILD = r'''
import json, sys, time
t0 = time.perf_counter()
import flask
from screening import create_app
from screening.core.centres import load_centres
from screening.core.rules import load_rules
rules_dir, instance = sys.argv[1], sys.argv[2]
flask.Flask.auto_find_instance_path = lambda self: instance     # the verdict goes to this folder
imported, cpu = time.perf_counter(), time.process_time()
app = create_app({"SECRET_KEY": "b" * 40, "DATABASE": instance + "/bench.db", "RULES_DIR": rules_dir,
                  "DEFAULT_CENTRE": "exemple-barcelona"})
built, cpu = time.perf_counter(), time.process_time() - cpu
shared = load_rules(rules_dir)
loaded_rules = time.perf_counter()
centres = load_centres(rules_dir, tuple(shared.services_by_slug), shared)
loaded = time.perf_counter()
print(json.dumps({"import": imported - t0, "create_app": built - imported, "create_app_cpu": cpu,
                  "load_rules": loaded_rules - built,
                  "load_centres": loaded - loaded_rules, "centres": len(centres),
                  "with_rules": sum(1 for c in centres.values() if c.extra)}))
'''


def house_rule(k: int) -> str:
    """One centre rule, the k-th distinct one (its wording names k, so that its content differs)."""
    when, outcome, about = VARIANTS[k % len(VARIANTS)]
    lines = ["", "[[rules]]", f'id = "house_rule_{k}"', f"when = {when}", f'outcome = "{outcome}"',
             f'source = "The centre\'s decision (house rule {k})."']
    if about:
        lines.append(f'about = "{about}"')
    lines += ["[rules.message]",
              f'en = "This centre asks you to tell it about this before booking (house rule {k})."',
              f'ca = "Aquest centre et demana que li ho expliquis abans de reservar (norma {k})."',
              f'es = "Este centro te pide que se lo cuentes antes de reservar (norma {k})."', ""]
    return "\n".join(lines)


def make_directory(target: Path, centres: int, with_rules: int, distinct: int) -> Path:
    """A copy of rules/ with `centres` centre files; `with_rules` of them carry one of `distinct` rule sets."""
    rules_dir = target / "rules"
    shutil.copytree(default_rules_dir(), rules_dir)
    template = (rules_dir / "centres" / SHIPPED).read_text()
    for i in range(1, centres):          # the shipped centre is the first
        extra = house_rule(i % distinct) if i <= with_rules else ""
        text = template.replace("Espai Massatge Exemple", f"Centre de prova {i:04d}")
        (rules_dir / "centres" / f"centre-{i:04d}.toml").write_text(text + extra)
    return rules_dir


def run_check_rules(rules_dir: Path) -> tuple[float, float, list[str], int]:
    """`screening check-rules --rules-dir` in a new process: wall and CPU seconds, its stdout lines, exit code."""
    started, cpu = time.perf_counter(), _children_cpu()
    command = [sys.executable, "-c", "from screening.cli import main; main()", "check-rules", "--rules-dir"]
    result = subprocess.run([*command, str(rules_dir)],
                            capture_output=True, text=True, timeout=3600, check=False)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    lines = [line for line in result.stdout.splitlines() if not line.startswith("centres/")]
    if result.returncode:
        lines += result.stderr.splitlines()[:5]
    return seconds, cpu, lines, result.returncode


def _children_cpu() -> float:
    """CPU seconds (user + system) of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_create_app(rules_dir: Path, instance: Path) -> dict:
    """create_app in a new process with `instance` as its instance folder: its timings (see CHILD)."""
    result = subprocess.run([sys.executable, "-c", CHILD, str(rules_dir), str(instance)], capture_output=True,
                            text=True, timeout=3600, check=False)
    if result.returncode:
        raise SystemExit(f"create_app failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def scenario(title: str, centres: int, with_rules: int, distinct: int) -> None:
    """Build one directory and print the figures of check-rules and create_app, cold and cached."""
    print(f"\n== {title}: {centres:,} centres, {with_rules:,} with rules of their own "
          f"({min(distinct, with_rules):,} distinct sets)")
    with tempfile.TemporaryDirectory(prefix="bench-centres-") as tmp:
        started = time.perf_counter()
        rules_dir = make_directory(Path(tmp), centres, with_rules, distinct)
        print(f"written in {time.perf_counter() - started:.1f} s")
        seconds, cpu, lines, code = run_check_rules(rules_dir)
        print(f"check-rules: {seconds:.1f} s wall, {cpu:.1f} s CPU (the machine is shared: CPU is the steadier "
              f"figure), exit {code}")
        for line in lines:
            print(f"    {line}")
        instance = Path(tmp) / "instance"
        instance.mkdir()
        for label in ("cold (nothing proved yet)", "cached verdict on disk"):
            t = run_create_app(rules_dir, instance)
            print(f"create_app {label}: {t['create_app']:.2f} s wall, {t['create_app_cpu']:.2f} s CPU "
                  f"(imports {t['import']:.2f} s before it); "
                  f"loading alone: rule files {t['load_rules']:.3f} s, {t['centres']:,} centre files "
                  f"{t['load_centres']:.3f} s")


def main() -> None:
    """Parse the options and run the scenarios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--with-rules", type=int, default=100, help="centres with rules of their own")
    parser.add_argument("--distinct", type=int, default=10, help="distinct sets among them")
    parser.add_argument("--all-distinct", type=int, default=0, metavar="N",
                        help="also N centres, each with rules of its own, all different")
    args = parser.parse_args()
    scenario("mixed", args.centres, args.with_rules, args.distinct)
    if args.all_distinct:
        scenario("all distinct", args.all_distinct, args.all_distinct - 1, args.all_distinct)


if __name__ == "__main__":
    main()
