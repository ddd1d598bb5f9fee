#!/usr/bin/env python
"""The long fault-injection run: many SIGKILLs (random moments and inside checkpoint saves), full disks, resumes.

    .venv/bin/python bench/faults.py [--kills 30] [--steps 60] [--save-steps 4] [--seed 0]

One tiny-model LoRA run is killed again and again and resumed each time until it reaches its final step.
After every fault the run directory is verified (engine/verify.py): events parse, every listed checkpoint is
complete and loads, nothing partial is listed. At the end the per-step losses are compared with an
uninterrupted run of the same config (the resumed trajectory must be the same). Prints the counts.
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
        cfg = tmp / "c.yaml"
        cfg.write_text(f"model: {{name_or_path: {model}}}\ndata: {{train: {data}, max_length: 64}}\n"
                       f"training: {{max_steps: {a.steps}, save_steps: {a.save_steps}, batch_size: 4, "
                       f"learning_rate: 1e-3}}\n")
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
        print(f"RESULT faults injected {injected} ({', '.join(f'{k} {v}' for k, v in counts.items())}); "
              f"survived with a sound run directory {survived}; resumes {resumes}")
        print(f"RESULT final state {final['state']} at step {final.get('step')}/{a.steps}; "
              f"steps with a loss {len(got)}; largest loss difference to the uninterrupted run {drift:.2e}; "
              f"problems {len(problems_seen) + len(found)}")
        for pr in problems_seen + found:
            print("  " + pr)
        return 0 if final["state"] == "completed" and not problems_seen and not found and drift < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
