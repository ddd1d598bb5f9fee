"""A sweep's search space from the command line, checked against the config schema before anything exists.

Light module. `--grid training.learning_rate=1e-4,3e-4` lists values; `--search KEY=KIND:...` names a range:
loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH, logint:LOW:HIGH, choice:A,B,C. Values are read as YAML and
coerced by the key's schema field, so every problem names the key and what to write instead.
"""
from __future__ import annotations

import itertools
from typing import Any

import yaml

from engine import config as cfgmod
from engine.config import Config, Problem
from engine.config.validate import closest

KINDS = ("loguniform", "uniform", "int", "logint", "choice")
# What an objective is measured on: the eval event's key (eval_loss -> loss); lower is better for these.
MINIMIZE = ("loss", "perplexity", "ppl", "error", "wer", "cer")


def _value(path: str, raw: str, problems: list[Problem]) -> Any:
    try:
        v = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        v = raw
    f = cfgmod.field_for(path)
    v, problem = cfgmod.coerce(path, f, v)
    if problem:
        problems.append(problem)
    return v


def _key(text: str, flag: str, problems: list[Problem]) -> tuple[str, str] | None:
    if "=" not in text:
        problems.append(Problem(f"{flag} {text}", "expected section.key=values", f"e.g. {flag} training.learning_rate="
                                + ("1e-4,3e-4" if flag == "--grid" else "loguniform:1e-5:1e-3")))
        return None
    k, _, rest = text.partition("=")
    k = k.strip()
    if cfgmod.field_for(k) is None or "." not in k and k not in ("method",):
        problems.append(Problem(k, f"unknown key in {flag}", closest(k, cfgmod.all_keys())))
        return None
    return k, rest


def parse_space(grid: list[str], search: list[str]) -> tuple[dict, list[Problem]]:
    """{key: {"kind": "choice", "values": [...]} | {"kind": "float"|"int", "low", "high", "log"}}, problems."""
    space: dict[str, dict] = {}
    problems: list[Problem] = []
    for text in grid:
        got = _key(text, "--grid", problems)
        if got:
            k, rest = got
            values = [_value(k, v, problems) for v in rest.split(",") if v.strip()]
            if not values:
                problems.append(Problem(k, "--grid needs at least one value", f"e.g. --grid {k}=A,B"))
            twice = sorted({repr(v) for v in values if values.count(v) > 1})
            if twice:
                problems.append(Problem(k, f"--grid lists {', '.join(twice)} more than once", "list each value once"))
            if k in space:
                problems.append(Problem(k, "given twice in --grid/--search", "one --grid or --search per key"))
            space[k] = {"kind": "choice", "values": values}
    for text in search:
        got = _key(text, "--search", problems)
        if not got:
            continue
        k, rest = got
        kind, _, args = rest.partition(":")
        if kind not in KINDS:
            problems.append(Problem(k, f"unknown range {kind!r} in --search", f"one of {', '.join(KINDS)}, e.g. "
                                    f"{k}=loguniform:1e-5:1e-3 or {k}=choice:a,b"))
            continue
        if k in space:
            problems.append(Problem(k, "given twice in --grid/--search", "one --grid or --search per key"))
        if kind == "choice":
            space[k] = {"kind": "choice", "values": [_value(k, v, problems) for v in args.split(",") if v.strip()]}
            continue
        low, _, high = args.partition(":")
        lo, hi = _value(k, low, problems), _value(k, high, problems)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
            problems.append(Problem(k, f"{kind} needs two numbers LOW:HIGH, got {args!r}", f"e.g. {k}={kind}:1e-5:1e-3"))
            continue
        if lo >= hi:
            problems.append(Problem(k, f"LOW {lo} is not below HIGH {hi}"))
        if kind.startswith("log") and lo <= 0:
            problems.append(Problem(k, f"{kind} needs LOW > 0 (got {lo})", "use uniform for a range from 0"))
        integer = kind in ("int", "logint")
        if integer and cfgmod.field_for(k).type != "int":
            problems.append(Problem(k, f"{kind} is for whole-number keys; {k} is a {cfgmod.field_for(k).type}",
                                    "use uniform or loguniform"))
        space[k] = {"kind": "int" if integer else "float", "low": lo, "high": hi, "log": kind.startswith("log")}
    if not space and not problems:
        problems.append(Problem("--grid/--search", "nothing to sweep",
                                "add --grid KEY=A,B or --search KEY=loguniform:LOW:HIGH"))
    return space, problems


def parse_point(text: str, space: dict) -> tuple[dict, list[Problem]]:
    """`--enqueue training.learning_rate=3e-4,adapter.r=8`: values for every swept key, inside their ranges."""
    problems: list[Problem] = []
    point = {}
    for part in text.split(","):
        k, eq, raw = part.partition("=")
        k = k.strip()
        if not eq or k not in space:
            problems.append(Problem(f"--enqueue {text}", f"{k!r} is not a swept key" if eq else "expected KEY=VALUE",
                                    f"give a value for each of {', '.join(space)}"))
            continue
        point[k] = _value(k, raw, problems)
    missing = [k for k in space if k not in point]
    if missing and not problems:
        problems.append(Problem(f"--enqueue {text}", f"no value for {', '.join(missing)}",
                                "give a value for every swept key"))
    for k, v in point.items():
        s = space[k]
        inside = v in s["values"] if s["kind"] == "choice" else (
            isinstance(v, (int, float)) and s["low"] <= v <= s["high"])
        if not inside:
            problems.append(Problem(k, f"--enqueue value {v!r} is outside the searched range",
                                    "widen the --search range or pick a value inside it"))
    return point, problems


def grid_points(space: dict) -> list[dict]:
    """Every combination of a grid, the first key varying slowest (in the order the user gave them)."""
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k]["values"] for k in keys))]


def apply(base: Config, params: dict) -> Config:
    """The trial's config: the base with the swept values, validated (ConfigError names every problem)."""
    raw = base.to_dict()
    for path, v in params.items():
        section, _, k = path.rpartition(".")
        (raw[section] if section else raw)[k] = v
    return cfgmod.parse(raw)


def check(base: Config, space: dict, mode: str, objective: str, first: list[dict] = ()) -> list[Problem]:
    """Problems a sweep would hit only after its runs exist: a grid point or a range end the config refuses, an
    objective with no evaluation data."""
    problems: list[Problem] = []
    if mode == "grid":
        samples = grid_points(space)
    else:  # every end of every range and every choice, one key at a time
        samples = []
        for k, s in space.items():
            for v in (s["values"] if s["kind"] == "choice" else (s["low"], s["high"])):
                samples.append({k: v})
        samples += list(first)
    seen = set()
    for params in samples:
        try:
            apply(base, params)
        except cfgmod.ConfigError as e:
            for p in e.problems:
                where = ", ".join(f"{k}={v}" for k, v in params.items())
                text = f"{p} (with {where})"
                if text not in seen:
                    seen.add(text)
                    problems.append(Problem(p.path, f"{p.message} (with {where})", p.fix, p.related))
    d = base.data
    if not d.eval and not d.eval_fraction:
        problems.append(Problem("data.eval", f"the objective {objective} is measured on evaluation data and this "
                                "config has none", "set data.eval to a file, or data.eval_fraction (e.g. 0.1)"))
    return problems


def metric_of(objective: str) -> str:
    """eval_loss -> loss: the key of the engine's eval events."""
    return objective.removeprefix("eval_")


def direction_of(objective: str) -> str:
    m = metric_of(objective).lower()
    return "minimize" if any(w in m for w in MINIMIZE) else "maximize"
