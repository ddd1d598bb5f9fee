"""The engine process: `python -m engine.worker RUN_DIR [--resume]` trains one run and records it.

Started detached (its own session) by engine/launch.py, with stdout/stderr going to engine.log. It
ignores SIGHUP (a lost terminal), turns SIGTERM/SIGINT into a graceful stop, and ends every run in
completed, stopped or failed with the reason in status.json.
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import importlib
import os
import resource
import shutil
import signal
import socket
import sys
import threading
import time
import traceback

import psutil

from engine import config as cfgmod
from engine.config import Config
from engine.monitor.snapshotter import Snapshotter
from engine.planning import estimate
from engine.rundir.events import EventWriter
from engine.rundir.queue import taking
from engine.rundir.runs import Run
from engine.system.telemetry import Probe, Sampler
from engine.training.distributed import for_rank, rank

METHOD_MODULES = {"sft": "engine.training.methods.sft", "dpo": "engine.training.methods.dpo", "kto": "engine.training.methods.kto",
                  "reward": "engine.training.methods.reward", "grpo": "engine.training.methods.grpo", "rloo": "engine.training.methods.rloo",
                  "classification": "engine.training.methods.classification"}


def oom_message(cfg: Config, step: int, resolved: dict) -> str:
    import torch

    t, d = cfg.training, cfg.data
    used = total = peak = None
    try:
        free, total = torch.cuda.mem_get_info()
        used, peak = total - free, torch.cuda.max_memory_allocated()
    except Exception:  # noqa: BLE001
        pass
    gib = lambda b: f"{b / 2**30:.1f} GiB" if b is not None else "N/A"  # noqa: E731
    tips = [f"training.batch_size {t.batch_size} -> {max(1, t.batch_size // 2)} "
            f"(and training.grad_accum {t.grad_accum} -> {t.grad_accum * 2} to keep the effective batch)",
            f"data.max_length {d.max_length} -> {max(64, d.max_length // 2)}"]
    if not resolved.get("gradient_checkpointing"):
        tips.append("training.gradient_checkpointing: true")
    if cfg.model.quantization != "4bit":
        tips.append("model.quantization: 4bit with adapter.kind: lora (QLoRA)")
    return (f"CUDA out of memory at step {step}: {gib(used)} of {gib(total)} in use, torch peak {gib(peak)}. "
            f"To fit, change one of: {'; '.join(tips)}. Check `tunebench estimate` before relaunching.")


def error_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > 600:
        text = text[:600] + "..."
    return f"{type(exc).__name__}: {text} (traceback in engine.log)"


def disk_full_message(run: Run, step: int) -> str:
    usage = shutil.disk_usage(run.path)
    cps = run.checkpoints()
    kept = f"checkpoints up to step {cps[-1].step} are intact" if cps else "no earlier checkpoint was complete"
    return (f"Disk full while writing at step {step}: {usage.free / 2**20:.0f} MiB free of "
            f"{usage.total / 2**30:.1f} GiB on the filesystem of {run.path}. The partial save was removed; {kept}. "
            f"Free space (old runs' checkpoints, caches) or lower training.save_total_limit, then "
            f"`tunebench train --resume {run.id}`.")


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC as an OSError, or wrapped by a library (safetensors raises its own error with "os error 28")."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(exc) or f"os error {errno.ENOSPC}" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def clear_partial_saves(run: Run) -> None:
    """Remove saves that never completed (staging dirs, half-deleted checkpoints): they are never resumed from."""
    for d in [run.path / ".trainer", *run.checkpoints_dir.glob(".deleting-*")]:
        shutil.rmtree(d, ignore_errors=True)


def peak_memory() -> dict:
    out = {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
        out["peak_cuda_reserved_bytes"] = torch.cuda.max_memory_reserved()
    return out


def run_engine(run: Run, resume: bool = False) -> int:
    stop_flag = threading.Event()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal going away is not a reason to stop
    signal.signal(signal.SIGTERM, lambda *_: stop_flag.set())
    signal.signal(signal.SIGINT, lambda *_: stop_flag.set())
    me = psutil.Process()
    if rank() == 0:  # before anything is opened: an engine that loses its queued run must touch nothing
        with taking(run) as ours:  # a queued run is started only by the engine that takes its queue entry
            if ours:
                run.write_status(state="starting", pid=os.getpid(), pid_started=me.create_time(),
                                 host=socket.gethostname(), started=time.time(), ended=None, error=None,
                                 resumed=resume)
        if not ours:
            print(f"not started: {run.id} left the queue before this engine could take it (another engine took "
                  "it, or it was cancelled)", file=sys.stderr)
            return 3
    run, events = for_rank(run, EventWriter)  # rank 0 alone writes status, events and checkpoints
    events.write("state", state="starting", pid=os.getpid(), resume=resume)
    clear_partial_saves(run)
    probe = Probe()
    sampler = Sampler(lambda: events.write("telemetry", **probe.sample()), interval=1.0).start()
    # The chart history a monitor starts from (engine/snapshot.py); rank 0 alone has the events.
    history = Snapshotter(run.events_path).start() if isinstance(events, EventWriter) else None
    step, resolved, cfg, callback = 0, {}, None, None
    try:
        cfg = run.settings()
        t_import = time.perf_counter()
        import torch  # noqa: F401 - 7-9 s; timed so the summary can say where start-up went

        from engine.training import modeling
        from engine.training.callbacks import RunCallback

        resolved = modeling.resolve(cfg)
        if cfg.model.trust_remote_code:
            events.write("log", level="warning", message="model.trust_remote_code is on: the model's own Python "
                         "code runs in this engine; only for models you trust")
        events.write("log", level="info", message=f"imported the ML stack in {time.perf_counter() - t_import:.1f} s")
        predicted = estimate.for_run(cfg, resolved)  # predicted_peak_bytes etc.; {} for a model it cannot read
        events.write("state", state="starting", resolved=resolved, **predicted)
        run.write_status(resolved=resolved, **predicted)
        job = {"trainer_dir": str(run.path / ".trainer"),
               "config_hash": hashlib.sha256(cfgmod.dump(cfg).encode()).hexdigest()[:16]}
        callback = RunCallback(run, events, cfg, job, stop_flag)
        method = importlib.import_module(METHOD_MODULES[cfg.method])
        trainer = method.build(cfg, resolved, job, [callback])
        from engine.training.methods.extras import attach  # training.freeze, gradual unfreezing, data.general_eval

        attach(trainer, cfg, callback)
        from engine.training.faults import install as install_faults

        if install_faults(trainer, callback):
            events.write("log", level="warning", message="fault injection armed (TUNEBENCH_FAULTS)")
        for note in job.get("notes", []):
            events.write("log", level="warning", message=note)
        events.write("data", **{k: v for k, v in job.items() if k in ("format", "train_rows", "eval_rows", "source_rows", "labels", "dropped")})
        events.write("log", level="info", message="model ready", **modeling.trainable_parameters(trainer.model))
        resume_from = None
        if resume:
            last = run.last_checkpoint()
            resume_from = str(last.path) if last else None
            events.write("log", level="info", message=f"resuming from {last.name if last else 'the start (no complete checkpoint)'}")
        if stop_flag.is_set():
            raise KeyboardInterrupt
        t0 = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume_from)
        wall = time.perf_counter() - t0
        step = trainer.state.global_step
        train_wall = max(1e-9, wall - callback.excluded_s)
        final = "stopped" if callback.stopped else "completed"
        summary = {"step": step, "max_steps": trainer.state.max_steps, "train_wall_s": round(train_wall, 3),
                   "wall_s": round(wall, 3), "num_tokens": callback.num_tokens,
                   "tokens_per_s": round(callback.num_tokens / train_wall, 1), "final_loss": callback.last_loss,
                   "final_eval_loss": callback.last_eval, "best_eval_loss": callback.best_eval, **peak_memory(),
                   **modeling.trainable_parameters(trainer.model), **job.get("summary_extra", {}),
                   **{k: v for k, v in predicted.items() if k != "predicted_parts"}}
        events.write("summary", **summary)
        try:
            estimate.record_run(cfg, resolved, summary)  # measured speed teaches later estimates on this device
        except Exception as e:  # noqa: BLE001 - a cache we cannot write must not fail a finished run
            events.write("log", level="warning", message=f"speed not recorded for estimates: {e}")
        last = run.last_checkpoint()
        events.write("state", state=final, step=step)
        run.write_status(state=final, step=step, ended=time.time(), summary=summary,
                         final_checkpoint=last.name if last else None)
        return 0
    except KeyboardInterrupt:
        events.write("state", state="stopped", step=step)
        run.write_status(state="stopped", ended=time.time())
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure ends the run as failed, with its reason
        traceback.print_exc()
        torch = sys.modules.get("torch")
        oom = torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ()))
        sampler.stop()  # no telemetry writes racing the final ones (they may be failing on a full disk)
        # the trainer's own step: status.json's progress is written every 2 s and may lag behind
        step = callback.step if callback is not None else run.status().get("step", 0)
        msg = oom_message(cfg, step, resolved) if oom and cfg else error_message(exc)
        if is_disk_full(exc):
            clear_partial_saves(run)  # frees the space the failed save took, so the status below can be written
            msg = disk_full_message(run, step)
        if isinstance(exc, cfgmod.ConfigError):
            msg = "invalid config: " + "; ".join(exc.problems)
        try:
            events.write("state", state="failed", step=step, error=msg, oom=bool(oom), **peak_memory())
        except OSError:
            pass  # the event log is best effort here; status.json below is the record that must land
        run.write_status(state="failed", step=step, ended=time.time(), error=msg, oom=bool(oom))
        print(f"run failed: {msg}", file=sys.stderr)
        return 1
    finally:
        sampler.stop()
        if history is not None:
            history.close()  # after the final events: the snapshot covers the finished run
        events.close()
        sys.stdout.flush()
        sys.stderr.flush()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.worker")
    p.add_argument("run_dir")
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    return run_engine(Run(a.run_dir), resume=a.resume)


if __name__ == "__main__":
    sys.exit(main())
