#!/usr/bin/env python
"""The long fault-injection run: SIGKILLs (random moments and inside checkpoint saves), full disks, resumes, and the
accidents of issue 14: resumers racing, status.json deleted under a live engine, really full filesystems, short writes.

    .venv/bin/python bench/faults.py [--kills 30] [--steps 60] [--save-steps 4] [--seed 0]
        [--scenarios kills,race,status,full,short] [--racers 4] [--races 5] [--deletes 10]
        [--sizes 200k,300k,500k,800k,1200k,2m,4m] [--short-writes 6]

kills: one tiny-model LoRA run is killed again and again and resumed each time until it reaches its final step;
  after every fault the run directory is verified (engine/rundir/verify.py), and at the end the per-step losses
  are compared with an uninterrupted run of the same config (the resumed trajectory must be the same).
race: --racers `tunebench train --resume` at once on a lost run, --races times: exactly one engine may start.
status: status.json deleted (or damaged) --deletes times under a live engine: `tunebench status` must say running
  each time, a second --resume must be refused, the engine must write a complete status again, stop must work.
full: a run on a tmpfs of each --sizes (root only): every run must end `failed` with the disk-full reason (never
  `lost`), its last event the failure, the directory sound.
short: short_write=N for --short-writes values of N: no half line glued into events.jsonl, the failure visible.
Prints one RESULT line per scenario; exit status 1 when any invariant broke.
"""
from __future__ import annotations

import os
import sys

# bench/inspect.py is named like the stdlib module and Python puts this folder first on sys.path: drop it.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import random
import signal
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.rundir.events import read_events  # noqa: E402
from engine.rundir.runs import Run  # noqa: E402
from engine.rundir.verify import losses_by_step, verify_run  # noqa: E402


def cli(runs_dir: Path, *args, faults: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs_dir), "TUNEBENCH_FAULTS": faults}
    return subprocess.run([sys.executable, "-m", "tunebench", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def wait(pred, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=30, help="faults to inject before letting the run finish")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--save-steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenarios", default="kills,race,status,full,short")
    p.add_argument("--racers", type=int, default=4, help="resumers started at once per race")
    p.add_argument("--races", type=int, default=5)
    p.add_argument("--deletes", type=int, default=10, help="status.json deletions under a live engine")
    p.add_argument("--sizes", default="200k,300k,500k,800k,1200k,2m,4m", help="tmpfs sizes for the full-disk runs")
    p.add_argument("--short-writes", type=int, default=6, help="short_write=N runs (N = 3, 6, ...)")
    a = p.parse_args()
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory(prefix="tb-faults-") as tmp:
        tmp = Path(tmp)
        from engine.demo.tinymodel import build_tiny_llama

        model = build_tiny_llama(tmp / "model")
        data = tmp / "chat.jsonl"
        with open(data, "w") as f:
            for i in range(200):
                f.write(json.dumps({"messages": [{"role": "user", "content": f"count {i}"},
                                                 {"role": "assistant", "content": f"{i} {i + 1} {i + 2}"}]}) + "\n")

        def config(name: str, steps: int, save_steps: int) -> Path:
            path = tmp / name
            path.write_text(f"model: {{name_or_path: {model}}}\ndata: {{train: {data}, max_length: 64}}\n"
                            f"training: {{max_steps: {steps}, save_steps: {save_steps}, batch_size: 4, "
                            f"learning_rate: 1e-3}}\n")
            return path

        failed = False
        wanted = set(a.scenarios.split(","))
        if "kills" in wanted:
            failed |= kills(a, rng, tmp, config("c.yaml", a.steps, a.save_steps))
        if "race" in wanted:
            failed |= race(a, tmp, config("race.yaml", 12, 3))
        if "status" in wanted:
            failed |= status_deleted(a, rng, tmp, config("long.yaml", 100000, 0))
        if "full" in wanted:
            failed |= full_disks(a, tmp, config("full.yaml", 12, 1))
        if "short" in wanted:
            failed |= short_writes(a, tmp, config("short.yaml", 12, 3))
        return 1 if failed else 0


def kills(a, rng, tmp: Path, cfg: Path) -> bool:
    """The SIGKILL marathon; True when an invariant broke."""
    ref_runs, runs = tmp / "ref", tmp / "runs"
    t0 = time.time()
    assert cli(ref_runs, "train", cfg).returncode == 0
    ref = losses_by_step(Run(next(ref_runs.iterdir())))
    print(f"reference run: {len(ref)} steps in {time.time() - t0:.0f} s", flush=True)

    counts = {"random_kill": 0, "kill_during_save": 0, "kill_before_rename": 0, "enospc_during_save": 0}
    survived = resumes = 0
    problems_seen = []
    run = None
    injected = 0
    while injected < a.kills:
        kind = rng.choice(list(counts))
        faults = "" if kind == "random_kill" else f"{kind}={rng.randint(1, 2)}"
        args = ["train", "--resume", run.id, "--detach"] if run else ["train", cfg, "--detach"]
        out = cli(runs, *args, faults=faults)
        if out.returncode:
            print(f"could not start: {out.stderr[-500:]}")
            return 1
        run = run or Run(runs / out.stdout.strip().splitlines()[-1])
        resumes += 1
        if kind == "random_kill":
            wait(lambda: run.status().get("state") == "running")
            time.sleep(rng.uniform(0.0, 1.5))
            try:
                os.kill(run.status()["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait(lambda: run.state() in ("lost", "failed", "completed", "stopped"), timeout=300)
        if run.state() == "completed":
            break  # the fault came too late to land; still a survived run
        counts[kind] += 1
        injected += 1
        found = verify_run(run)
        problems_seen += found
        survived += not found
        last = run.last_checkpoint()
        print(f"fault {injected:3} {kind:20} -> {run.state():6} at step {run.status().get('step')}, "
              f"last complete checkpoint {last.step if last else '-'}, problems {len(found)}", flush=True)
    if run.state() != "completed":
        cli(runs, "train", "--resume", run.id)
    final = run.status()
    got = losses_by_step(run)
    drift = max((abs(got[s] - ref[s]) for s in ref if s in got), default=float("nan"))
    found = verify_run(run)
    print(f"RESULT kills: faults injected {injected} ({', '.join(f'{k} {v}' for k, v in counts.items())}); "
          f"survived with a sound run directory {survived}; resumes {resumes}")
    print(f"RESULT kills: final state {final['state']} at step {final.get('step')}/{a.steps}; "
          f"steps with a loss {len(got)}; largest loss difference to the uninterrupted run {drift:.2e}; "
          f"problems {len(problems_seen) + len(found)}", flush=True)
    for pr in problems_seen + found:
        print("  " + pr)
    return not (final["state"] == "completed" and not problems_seen and not found and drift < 1e-4)


def lost(runs: Path, cfg: Path) -> Run:
    """A run SIGKILLed inside its second save: lost, resumable."""
    out = cli(runs, "train", cfg, faults="kill_during_save=2")
    run = Run(next(d for d in runs.iterdir() if d.is_dir()))
    assert run.state() == "lost", (run.state(), out.stderr[-500:])
    return run


def race(a, tmp: Path, cfg: Path) -> bool:
    """--racers resumers at once, --races times: one engine each time, the others refused naming its pid."""
    one = refused = sound = 0
    for i in range(a.races):
        runs = tmp / f"race{i}"
        run = lost(runs, cfg)
        before = len(read_events(run.events_path))
        env = {**os.environ, "TUNEBENCH_RUNS_DIR": str(runs)}
        procs = [subprocess.Popen([sys.executable, "-m", "tunebench", "train", "--resume", run.id, "--detach"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(a.racers)]
        results = [(p.wait(), p.stderr.read()) for p in procs]
        wait(lambda: run.state() in ("completed", "failed", "lost", "stopped"), timeout=600)
        starts = [e for e in read_events(run.events_path)[before:] if e["kind"] == "state" and "pid" in e
                  and e["state"] == "starting"]
        one += len(starts) == 1 and sum(rc == 0 for rc, _ in results) == 1
        refused += sum(rc == 2 and "held by engine pid" in err for rc, err in results)
        found = verify_run(run)
        sound += not found and run.state() == "completed"
        print(f"race {i + 1}: {len(starts)} engine(s) started, exit statuses {sorted(rc for rc, _ in results)}, "
              f"final {run.state()}, problems {len(found)}", flush=True)
    print(f"RESULT race: {a.races} races of {a.racers} resumers: one engine {one}/{a.races}; refusals naming the "
          f"holder {refused}/{a.races * (a.racers - 1)}; completed and sound {sound}/{a.races}", flush=True)
    return one != a.races or sound != a.races or refused != a.races * (a.racers - 1)


def status_deleted(a, rng, tmp: Path, cfg: Path) -> bool:
    """status.json deleted or damaged under a live engine, --deletes times."""
    runs = tmp / "status"
    out = cli(runs, "train", cfg, "--detach")
    run = Run(runs / out.stdout.strip().splitlines()[-1])
    wait(lambda: run.status().get("state") == "running")
    shown_running = refused = rewritten = complete = 0
    for i in range(a.deletes):
        time.sleep(rng.uniform(0.0, 1.0))
        if i % 2:
            run.status_path.write_text("{damaged")
        else:
            run.status_path.unlink(missing_ok=True)
        st = cli(runs, "status", run.id, "--json")
        shown_running += st.returncode == 0 and json.loads(st.stdout or "{}").get("state") == "running"
        again = cli(runs, "train", "--resume", run.id)
        refused += again.returncode == 2 and "held by engine pid" in again.stderr
        back = wait(lambda: "unreadable" not in run.status(), timeout=30)
        rewritten += back
        st = run.status()
        complete += all(k in st for k in ("pid", "method", "model", "created", "started", "step"))
    stopped = cli(runs, "stop", run.id).returncode == 0 and wait(lambda: run.state() == "stopped", timeout=300)
    found = verify_run(run)
    print(f"RESULT status: deleted/damaged {a.deletes} times under a live engine: shown running {shown_running}, "
          f"second resume refused {refused}, rewritten by the engine {rewritten} (complete {complete}); "
          f"stop reached it {stopped}; problems {len(found)}", flush=True)
    return min(shown_running, refused, rewritten, complete) != a.deletes or not stopped or bool(found)


def full_disks(a, tmp: Path, cfg: Path) -> bool:
    """A run on a tmpfs of each size: failed with the reason, never lost (root only: mount)."""
    if os.geteuid() != 0:
        print("RESULT full: skipped (mounting a tmpfs needs root)")
        return False
    outcomes = []
    for size in a.sizes.split(","):
        mnt = tmp / f"tmpfs-{size}"
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mnt)], check=True)
        try:
            out = cli(mnt / "runs", "train", cfg)
            dirs = [d for d in (mnt / "runs").iterdir() if d.is_dir()] if (mnt / "runs").exists() else []
            if not dirs:
                ok = out.returncode == 2 and "No space left" in out.stderr
                outcomes.append((size, "refused before a run existed" if ok else "no run, no reason", ok))
            else:
                run = Run(dirs[0])
                st, events = run.status(), read_events(run.events_path)
                ok = (st.get("state") == "failed" and str(st.get("error", "")).startswith("Disk full")
                      and events and events[-1].get("state") == "failed" and not verify_run(run))
                outcomes.append((size, f"{run.state()} at step {st.get('step')}: {str(st.get('error'))[:70]}", ok))
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        print(f"full {size}: {outcomes[-1][1]}", flush=True)
    good = sum(ok for *_, ok in outcomes)
    print(f"RESULT full: {good}/{len(outcomes)} filesystems ended failed with the disk-full reason and a sound run "
          "directory (or refused before creating one)", flush=True)
    return good != len(outcomes)


def short_writes(a, tmp: Path, cfg: Path) -> bool:
    """short_write=N: the event log keeps whole lines and shows the failure."""
    good = 0
    for k in range(a.short_writes):
        n = 3 + 3 * k
        runs = tmp / f"short{n}"
        out = cli(runs, "train", cfg, faults=f"short_write={n}")
        run = Run(next(d for d in runs.iterdir() if d.is_dir()))
        data = run.events_path.read_bytes()
        whole = data.endswith(b"\n") and all(line.startswith(b'{"seq":') for line in data.splitlines())
        last = read_events(run.events_path)[-1]
        ok = whole and out.returncode == 1 and last.get("state") == "failed" and not verify_run(run)
        good += ok
        print(f"short_write={n}: whole lines {whole}, final {run.state()}, last event {last.get('kind')}/"
              f"{last.get('state')}", flush=True)
    print(f"RESULT short: {good}/{a.short_writes} runs kept whole event lines and a visible failure", flush=True)
    return good != a.short_writes


if __name__ == "__main__":
    sys.exit(main())
