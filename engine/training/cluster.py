"""Runs on several nodes and under Slurm: the start-up handshake, the node that went away, Slurm's reasons.

Light at import (torch.distributed inside functions). At start every rank meets the others through torchrun's
store (no collective, no process group yet): rank 0 writes a token into status.json and every rank reads it back
from the run directory it was given, so a node that does not see the same directory fails the run by name before
anything trains; the ranks also agree there on resuming (one node's `--resume` resumes all) and publish a
listening socket each. When a collective fails, each survivor connects to every peer's socket: refused or
silent means that rank's process is gone, which names the node. A SIGTERM under Slurm is explained by asking
Slurm why (time limit, requeue, cancel).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine.rundir import slurm
from engine.rundir.events import EventWriter
from engine.rundir.runs import Run

HANDSHAKE_TIMEOUT_S = 600  # every node's engine imports torch before the handshake; a loaded node is slow
LINGER_S = 3.0  # a failing rank keeps its socket this long, so slower survivors do not count it as gone


class SharedDirError(RuntimeError):
    """The nodes do not see one run directory; the message names the nodes and says what to do."""

    def __init__(self, message: str, mine: str):
        super().__init__(message)
        self.mine = mine  # what this rank saw: ok, missing or other


@dataclass
class Nodes:
    """Every rank of the run as the handshake found it, and this rank's listening socket."""

    peers: list[dict]  # rank, node, local_rank, host, addr, port, pid, resume, sees
    me: int
    resume: bool
    listener: socket.socket
    seconds: float = 0.0  # the handshake, after torch's import: waiting for the slowest node, then one exchange

    def summary(self) -> list[dict]:
        """status.json's `nodes`: one entry per node with its host, ranks and pids."""
        out: dict[int, dict] = {}
        for p in self.peers:
            n = out.setdefault(p["node"], {"node": p["node"], "host": p["host"], "ranks": [], "pids": []})
            n["ranks"].append(p["rank"])
            n["pids"].append(p["pid"])
        return [out[k] for k in sorted(out)]

    def gone(self) -> list[dict]:
        """The peers whose engine process no longer answers (connection refused or no answer in 3 s)."""

        def answers(p: dict) -> bool:
            try:
                with socket.create_connection((p["addr"], p["port"]), timeout=3.0):
                    return True
            except OSError:
                return False

        others = [p for p in self.peers if p["rank"] != self.me]
        with ThreadPoolExecutor(max_workers=min(32, len(others) or 1)) as pool:
            alive = list(pool.map(answers, others))
        return [p for p, ok in zip(others, alive) if not ok]


def _env_int(name: str, default: int = 0) -> int:
    return int(os.environ.get(name) or default)


def multi_node() -> bool:
    """Several torchrun agents (nodes) in this run, with the agent's store for the workers."""
    return _env_int("GROUP_WORLD_SIZE", 1) > 1 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"


def _route_addr(master: str) -> str:
    """This host's address on the route to the store's host: the one the other nodes can reach."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((master, 1))  # UDP connect sends nothing; it only picks the route
            return s.getsockname()[0]
    except OSError:
        return socket.gethostname()


def _sees(run_path: Path, token: str) -> str:
    """Does this node's view of the run directory hold rank 0's token? Retried a while: NFS caches attributes."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            seen = json.loads((run_path / "status.json").read_text(encoding="utf-8")).get("fs_token") or ""
        except FileNotFoundError:
            seen = None
        except (OSError, ValueError):
            seen = ""  # there, but unreadable or torn: not rank 0's
        if seen == token:
            return "ok"
        if time.monotonic() > deadline:
            return "missing" if seen is None else "other"
        time.sleep(0.5)


def _shared_dir_message(run_path: Path, peers: list[dict]) -> str:
    head = next(p for p in peers if p["rank"] == 0)
    bad = {}
    for p in peers:
        if p["sees"] != "ok":
            bad.setdefault(p["node"], p)
    what = {"missing": "has no such directory", "other": "sees a different directory there (a node-local copy?)"}
    names = "; ".join(f"node {n} (host {p['host']}) {what[p['sees']]} at {p['path']}" for n, p in sorted(bad.items()))
    return (f"the run directory is not shared by every node: {names}; rank 0 (node {head['node']}, host "
            f"{head['host']}) wrote {head['path']}. Put the runs directory on a filesystem every node mounts at the "
            f"same path (NFS, Lustre, GPFS; --runs-dir or TUNEBENCH_RUNS_DIR), then tunebench train --resume "
            f"{run_path.name}.")


def handshake(run: Run, resume: bool) -> Nodes | None:
    """Meet every rank through torchrun's store: check the run directory is shared, agree on resuming.

    None on one node. Raises SharedDirError (on every rank) when a node sees another directory or none."""
    if not multi_node():
        return None
    from datetime import timedelta

    import torch.distributed as dist

    t0 = time.perf_counter()
    store, rank, world = next(dist.rendezvous("env://", timeout=timedelta(seconds=HANDSHAKE_TIMEOUT_S)))
    prefix = f"tunebench/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/{_env_int('TORCHELASTIC_RESTART_COUNT')}/"
    store = dist.PrefixStore(prefix, store)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("", 0))
    listener.listen(64)  # the kernel answers probes from the backlog; nothing ever accepts
    if rank == 0:
        token = secrets.token_hex(8)
        run.write_status(fs_token=token)
        store.set("token", token)
    token = store.get("token").decode()
    me = {"rank": rank, "node": _env_int("GROUP_RANK"), "local_rank": _env_int("LOCAL_RANK"),
          "host": socket.gethostname(), "addr": _route_addr(os.environ.get("MASTER_ADDR", "127.0.0.1")),
          "port": listener.getsockname()[1], "pid": os.getpid(), "resume": resume, "path": str(run.path),
          "sees": _sees(run.path, token)}
    store.set(f"peer/{rank}", json.dumps(me))
    keys = [f"peer/{r}" for r in range(world)]
    try:
        peers = [json.loads(v) for v in store.multi_get(keys)]
    except dist.DistError as e:  # the store's wait timed out: name who never arrived rather than a key
        missing = [r for r, k in enumerate(keys) if not store.check([k])]
        raise RuntimeError(f"rank(s) {', '.join(map(str, missing))} did not reach the start-up handshake in "
                           f"{HANDSHAKE_TIMEOUT_S} s: their node failed while starting (see its log: engine.log, "
                           f"nodes/*.log or slurm-*.out in {run.path})") from e
    if any(p["sees"] != "ok" for p in peers):
        listener.close()
        raise SharedDirError(_shared_dir_message(run.path, peers), me["sees"])
    return Nodes(peers, rank, any(p["resume"] for p in peers), listener, time.perf_counter() - t0)


def lost_message(nodes: Nodes, gone: list[dict], step, run_id: str) -> str:
    by_node: dict[int, list[dict]] = {}
    for p in gone:
        by_node.setdefault(p["node"], []).append(p)
    names = "; ".join(f"node {n} (host {ps[0]['host']}, rank{'s' if len(ps) > 1 else ''} "
                      f"{', '.join(str(p['rank']) for p in ps)})" for n, ps in sorted(by_node.items()))
    again = (f"tunebench train --resume {run_id}" if os.environ.get("SLURM_JOB_ID")
             else f"tunebench train --resume {run_id}, then tunebench join {run_id} on each other node")
    return (f"lost {names} at step {step}: its engine processes are gone (the machine went down, or they were "
            f"killed or ran out of memory; see that node's log). Resume with {again}")


def on_failure(run: Run, events, exc: BaseException, msg: str, nodes: Nodes | None, step) -> tuple:
    """(run, events, message) for a failing rank of a multi-node run: names the node that went away, and
    makes this rank a writer when rank 0 is gone (the lowest surviving rank) or saw another directory."""
    if isinstance(exc, SharedDirError):
        msg = str(exc)
        if _env_int("RANK") != 0 and _env_int("LOCAL_RANK") == 0 and exc.mine == "other":
            return Run(run.path), EventWriter(run.events_path), msg  # this node's view gets the failure too
        return run, events, msg
    if nodes is None:
        return run, events, msg
    gone = nodes.gone()
    if gone:
        msg = f"{lost_message(nodes, gone, step, run.path.name)}. This node's error: {msg}"
        alive = [p["rank"] for p in nodes.peers if p not in gone]
        if 0 in {p["rank"] for p in gone} and alive and min(alive) == nodes.me:
            run, events = Run(run.path), EventWriter(run.events_path)  # rank 0 died with the run's writer role
        time.sleep(LINGER_S)  # cost: seconds at a failure only, so a slower survivor's probe finds us alive
    return run, events, msg


def where(run: Run) -> dict:
    """Status fields saying where this engine runs (written with `starting`): the Slurm job's state and nodes."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    known = run.status().get("slurm") or {}
    return {"slurm": {**known, "job_id": job, "state": "RUNNING", "reason": None,
                      "nodelist": os.environ.get("SLURM_JOB_NODELIST"),
                      "restarts": _env_int("SLURM_RESTART_COUNT")}}


def slurm_ending(run: Run, step) -> dict:
    """How a run stopped by SIGTERM under Slurm ends: a time limit or a cancel says so, a requeue is queued."""
    job = os.environ.get("SLURM_JOB_ID")
    why = slurm.stop_reason(job) if job and _env_int("RANK") == 0 else {}  # rank 0 alone writes (and asks)
    if not why:
        return {}
    info = {**why, "state": why["why"] if why["why"] != "REQUEUED" else "PREEMPTED"}
    slurm_fields = {**(run.status().get("slurm") or {}), "state": why["state"], "reason": why.get("reason")}
    if why["why"] == "REQUEUED":
        last = run.last_checkpoint()
        return {"state": "queued", "slurm": slurm_fields, "error": None,
                "note": f"preempted at step {step}: Slurm requeued job {job}; it resumes from "
                        f"{last.name if last else 'the start'} when it runs again"}
    if why["why"] == "CANCELLED":
        return {"state": "stopped", "slurm": slurm_fields, "note": f"Slurm job {job} was cancelled (scancel)"}
    return {"state": "failed", "slurm": slurm_fields, "error": slurm.ended_message(run, job, info, step)}
