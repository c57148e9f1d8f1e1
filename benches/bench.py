"""taskreaper's benchmark: the official Huawei Cloud Python SDK's sequential loop against
`taskreaper purge`, side by side, on the emulator over HTTPS with a set latency and identical seeded
data (a fresh emulator per contender, same generator seed or seed file).

    bash benches/run.sh                         # builds, then runs scenarios a, b, c
    .venv/bin/python benches/bench.py --binary target/release/taskreaper --scenarios c,a --tasks-per-kind 50

Scenarios (issue 10's targets):
  a  --latency-ms, C = --concurrency, no server limit, purge --max-requests-per-second A_MAX_RPS (1000):
     target >= 12x the SDK's deletions/s and >= 85% of C / latency.
  b  server limit R (--server-limit, 50/s per access key: emulator --rate-limit-per-key R), purge with no
     rate flag (adaptive from its default start), tasks enough for about --b-seconds (60) of purge:
     target >= 90% of R, <= 3% of calls answered 429.
  c  out of the box: purge with no rate flag, no server limit: target >= 1x the SDK's deletions/s.

A flag the binary does not have yet (purge --max-requests-per-second / --requests-per-second, emulator
--rate-limit-per-key: `--help` is asked) is never passed: scenario a then runs without it and says so;
scenario b is skipped and says why (there is nothing to measure without a server limit). The SDK runs
once per distinct emulator setup (a and c share one) on its own fresh emulator.

Measured per contender (each a child process; its rusage comes from wait4):
  deleted      SDRS failure jobs + KPS failed tasks before minus after, from GET /_emulator/projects
  window       from the first cloud call the emulator logged to the child's exit (excludes interpreter
               start-up and imports; the log keeps the last 10,000 calls, beyond that from the spawn)
  del/s        deleted / window;  ratio = del/s / the SDK's del/s of the same emulator setup
  calls/s      every cloud call the emulator counted (429s included) / window
  limit        min(server limit, C / latency) in requests/s, C = 1 for the sequential SDK
  efficiency   calls/s / limit
  429 share    calls answered 429 / calls: the SDK counts what it caught; for taskreaper the emulator's
               count when GET /_emulator/calls has one, else its `status=429` retry/warn log lines
  gap p50/p99  gaps between consecutive call arrivals in the emulator's call log (server side, both)
  call p50/p99 client-timed SDK calls (perf_counter around the SDK method); taskreaper prints no per-call
               timing, so none for it
  CPU          user + system seconds of the child; peak RSS: its ru_maxrss
"""

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shlex
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
AK, SK = "DEMOACCESSKEY", "demo-secret-key"
LOG_LIMIT = 10_000
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


def flag_supported(binary, command, flag):
    out = subprocess.run([binary, command, "--help"], capture_output=True, text=True).stdout
    return flag in out


class Emulator:
    """`taskreaper emulator` over HTTPS on a free port; stopped by stop()."""

    def __init__(self, args, workdir, name, server_limit):
        self.ca = str(workdir / f"{name}-ca.pem")
        cmd = [args.binary, "emulator", "--listen", "127.0.0.1:0", "--tls", "--ca-out", self.ca,
               "--latency-ms", str(args.latency_ms), "--seed", str(args.seed)]
        if args.seed_file:
            cmd += ["--seed-file", args.seed_file]
        else:
            cmd += ["--projects", ",".join(args.project_ids), "--tasks-per-kind", str(args.tasks_per_kind)]
        if server_limit:
            cmd += ["--rate-limit-per-key", str(server_limit)]
        self.log = open(workdir / f"{name}-emulator.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.stop()
            sys.exit(f"bench: the emulator did not start: {line!r} (see {self.log.name})")
        self.url = match.group(1)
        self.ssl = ssl.create_default_context(cafile=self.ca)

    def admin(self, path):
        with urllib.request.urlopen(self.url + "/_emulator" + path, context=self.ssl, timeout=30) as r:
            return json.load(r)

    def remaining(self):
        return sum(p["failure_jobs"] + p["failed_tasks"] for p in self.admin("/projects").values())

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


def run_child(cmd, workdir, name, env=None):
    """Runs cmd to completion with stdout/stderr in files; returns times, rusage and the outputs."""
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with open(out, "w") as o, open(err, "w") as e:
        spawned = time.time()
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        ended = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "spawned": spawned, "ended": ended, "exit": proc.returncode,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        # Linux reports ru_maxrss in KiB.
        "rss_mib": usage.ru_maxrss / 1024,
        "stdout": out.read_text(), "stderr": ANSI.sub("", err.read_text()),
    }


def measure(emu, before, child, concurrency, server_limit, latency_ms):
    calls = emu.admin("/calls")
    log = calls.get("log", [])
    arrivals = [c["at_micros"] / 1e6 for c in log]
    truncated = calls.get("total", 0) > len(log) >= LOG_LIMIT
    start = child["spawned"] if truncated or not arrivals else min(arrivals)
    window = max(child["ended"] - start, 1e-9)
    deleted = before - emu.remaining()
    gaps = [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:])]
    limits = [concurrency / (latency_ms / 1000)] if latency_ms > 0 else []
    if server_limit:
        limits.append(server_limit)
    limit = min(limits) if limits else None
    total = calls.get("total", 0)
    return {
        "deleted": deleted, "before": before, "window": window, "del_s": deleted / window,
        "calls": total, "calls_s": total / window, "limit": limit,
        "efficiency": (total / window / limit) if limit else None,
        "gap_p50": percentile(gaps, 50), "gap_p99": percentile(gaps, 99),
        "cpu_s": child["cpu_s"], "rss_mib": child["rss_mib"], "exit": child["exit"],
        "emulator_calls": calls,
    }


def emulator_429s(calls):
    """A count of 429 answers from GET /_emulator/calls, if the emulator keeps one."""
    for key in ("throttled", "rate_limited", "too_many_requests"):
        if isinstance(calls.get(key), int):
            return calls[key]
    by_status = calls.get("by_status")
    if isinstance(by_status, dict):
        return by_status.get("429", by_status.get(429))
    return None


def run_sdk(args, workdir, name, server_limit):
    emu = Emulator(args, workdir, name, server_limit)
    try:
        before = emu.remaining()
        projects = list(emu.admin("/projects"))
        stats_file = workdir / f"{name}-stats.json"
        env = dict(os.environ, TASKREAPER_SDK_AK=AK, TASKREAPER_SDK_SK=SK)
        child = run_child([sys.executable, str(ROOT / "benches/sdk_baseline.py"), "--endpoint", emu.url,
                           "--ca-file", emu.ca, "--projects", ",".join(projects), "--kps", args.sdk_kps,
                           "--out", str(stats_file)], workdir, name, env)
        if child["exit"] != 0:
            sys.exit(f"bench: the SDK baseline failed:\n{child['stderr'][-3000:]}")
        m = measure(emu, before, child, 1, server_limit, args.latency_ms)
        stats = json.loads(stats_file.read_text())
        m["contender"] = f"Python SDK, sequential (KPS {args.sdk_kps})"
        m["share_429"] = stats["throttled"] / max(stats["calls"], 1)
        m["call_p50"] = percentile(stats["latencies_ms"], 50)
        m["call_p99"] = percentile(stats["latencies_ms"], 99)
        m["ready"] = f"{stats['errors']} errors"
        return m
    finally:
        emu.stop()


def policy_yaml(url, projects, max_deletions):
    return yaml.safe_dump({
        "apiVersion": "taskreaper.io/v1alpha1",
        "kind": "FailedTaskCleanupPolicy",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "credentialsRef": {"name": "creds"},
            "region": "cn-north-4",
            "endpoints": {"sdrs": url, "kps": url},
            "projects": [{"id": p} for p in projects],
            # Empty filters match everything: every SDRS failure (group-level and in every group) and
            # every KPS task, each deleted by id, as the SDK loop does.
            "targets": [{"service": "SDRS", "scope": "Matching", "match": {}},
                        {"service": "KPS", "scope": "Matching", "match": {}}],
            "schedule": {"interval": "1h"},
            "maxDeletionsPerRun": max_deletions,
        },
    }, sort_keys=False)


def run_taskreaper(args, workdir, name, server_limit, rate_flags):
    emu = Emulator(args, workdir, name, server_limit)
    try:
        before = emu.remaining()
        projects = list(emu.admin("/projects"))
        policy = workdir / f"{name}-policy.yaml"
        policy.write_text(policy_yaml(emu.url, projects, max(before * 2, 1000)))
        creds = workdir / "credentials.yaml"
        creds.write_text(f"accessKeyId: {AK}\nsecretAccessKey: {SK}\n")
        cmd = [args.binary, "purge", "-f", str(policy), "--credentials", str(creds),
               "--endpoint-allowlist", "127.0.0.1", "--ca-bundle", emu.ca,
               "--concurrency", str(args.concurrency)] + rate_flags + shlex.split(args.purge_extra)
        child = run_child(cmd, workdir, name, dict(os.environ, NO_COLOR="1"))
        m = measure(emu, before, child, args.concurrency, server_limit, args.latency_ms)
        m["contender"] = f"taskreaper purge, C={args.concurrency}" + (f" {' '.join(rate_flags)}" if rate_flags else "")
        counted = emulator_429s(m["emulator_calls"])
        if counted is None:
            counted = sum(1 for line in child["stderr"].splitlines() if re.search(r"\bstatus=429\b", line))
        m["share_429"] = counted / max(m["calls"], 1)
        m["call_p50"] = m["call_p99"] = None
        try:
            status = yaml.safe_load(child["stdout"])["status"]
            ready = next(c for c in status["conditions"] if c["type"] == "Ready")
            m["ready"] = f"{ready['status']}/{ready['reason']}"
        except Exception:  # noqa: BLE001 - a broken status is reported, not fatal
            m["ready"] = f"exit {child['exit']}, no status"
        return m
    finally:
        emu.stop()


def fmt(value, spec="{:.1f}", none="—"):
    return none if value is None else spec.format(value)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(ROOT / "target/release/taskreaper"))
    p.add_argument("--scenarios", default="a,b,c", help="comma-separated: a, b, c (default all)")
    p.add_argument("--latency-ms", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=16, help="C, purge --concurrency")
    p.add_argument("--projects", type=int, default=3, help="generated projects")
    p.add_argument("--tasks-per-kind", type=int, default=200,
                   help="generator size for a and c: 7N+3 tasks per project (200 -> 4,209 in 3 projects, "
                        "about 2 minutes of the SDK loop; a purge of seconds is mostly its ramp)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seed-file", help="emulator --seed-file instead of the generator (all scenarios)")
    p.add_argument("--a-max-rps", type=int, default=1000, help="scenario a: purge --max-requests-per-second")
    p.add_argument("--fixed-rps", type=int, help="also pass purge --requests-per-second N (a and c)")
    p.add_argument("--server-limit", type=int, default=50, help="scenario b: emulator --rate-limit-per-key R")
    p.add_argument("--b-seconds", type=int, default=60, help="scenario b: size the data for this long a purge")
    p.add_argument("--b-tasks-per-kind", type=int, help="scenario b: generator size (default from R and --b-seconds)")
    p.add_argument("--sdk-kps", choices=["by-id", "delete-all"], default="by-id")
    p.add_argument("--purge-extra", default="", help="more purge flags for every taskreaper run")
    p.add_argument("--out", default=str(ROOT / "target/bench/latest.md"))
    args = p.parse_args()
    args.project_ids = [hashlib.md5(f"bench-project-{i}".encode()).hexdigest() for i in range(args.projects)]
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]

    has_max = flag_supported(args.binary, "purge", "--max-requests-per-second")
    has_fixed = flag_supported(args.binary, "purge", "--requests-per-second")
    has_limit = flag_supported(args.binary, "emulator", "--rate-limit-per-key")
    notes, rows, checks = [], [], []
    workdir = Path(tempfile.mkdtemp(prefix="taskreaper-bench-"))
    sdk_cache = {}

    def fixed_flags():
        if args.fixed_rps is None:
            return []
        if not has_fixed:
            notes.append(f"--fixed-rps {args.fixed_rps}: this binary has no purge --requests-per-second; not passed.")
            return []
        return ["--requests-per-second", str(args.fixed_rps)]

    def sdk_for(server_limit, tasks_per_kind):
        key = (server_limit, tasks_per_kind)
        if key not in sdk_cache:
            saved, args.tasks_per_kind = args.tasks_per_kind, tasks_per_kind
            print(f"bench: SDK baseline (server limit {server_limit or 'none'}, {tasks_per_kind}/kind) ...", file=sys.stderr)
            sdk_cache[key] = run_sdk(args, workdir, f"sdk-{len(sdk_cache)}", server_limit)
            args.tasks_per_kind = saved
        return sdk_cache[key]

    def contest(label, server_limit, rate_flags, tasks_per_kind):
        sdk = sdk_for(server_limit, tasks_per_kind)
        saved, args.tasks_per_kind = args.tasks_per_kind, tasks_per_kind
        print(f"bench: scenario {label}: taskreaper purge {' '.join(rate_flags)} ...", file=sys.stderr)
        tr = run_taskreaper(args, workdir, f"taskreaper-{label}", server_limit, rate_flags)
        args.tasks_per_kind = saved
        tr["ratio"] = tr["del_s"] / sdk["del_s"] if sdk["del_s"] else None
        sdk_row = dict(sdk, ratio=1.0)
        if sdk.get("shown_in"):
            sdk_row["contender"] += f" (the run of scenario {sdk['shown_in']})"
        sdk.setdefault("shown_in", label)
        if sdk["before"] != tr["before"]:
            notes.append(f"scenario {label}: the SDK and taskreaper started from different task counts!")
        rows.append((label, sdk_row))
        rows.append((label, tr))
        return sdk, tr

    for s in scenarios:
        if s == "a":
            flags = []
            if has_max:
                flags = ["--max-requests-per-second", str(args.a_max_rps)]
            else:
                notes.append(f"a: this binary has no purge --max-requests-per-second; ran without it "
                             "(today's fixed limit applies).")
            flags += fixed_flags()
            _, tr = contest("a", None, flags, args.tasks_per_kind)
            checks.append(("a", "deletions/s vs SDK", ">= 12x", fmt(tr["ratio"], "{:.2f}x"),
                           tr["ratio"] is not None and tr["ratio"] >= 12))
            checks.append(("a", "efficiency vs C/latency", ">= 85%", fmt(tr["efficiency"] and tr["efficiency"] * 100, "{:.1f}%"),
                           (tr["efficiency"] or 0) >= 0.85))
        elif s == "b":
            if not has_limit:
                notes.append("b: skipped: this binary's emulator has no --rate-limit-per-key (the server "
                             "limit the scenario measures against).")
                checks.append(("b", "share of R", ">= 90%", "not run", None))
                checks.append(("b", "429 share", "<= 3%", "not run", None))
                continue
            per_project = 7
            n = args.b_tasks_per_kind or math.ceil(args.server_limit * args.b_seconds / (per_project * args.projects))
            notes.append(f"b: {n} per kind (sized for {args.b_seconds} s at R={args.server_limit}/s).")
            _, tr = contest("b", args.server_limit, [], n)
            checks.append(("b", f"calls/s vs R={args.server_limit}", ">= 90%",
                           fmt(tr["calls_s"] / args.server_limit * 100, "{:.1f}%"),
                           tr["calls_s"] >= 0.9 * args.server_limit))
            checks.append(("b", "purge length", f"~{args.b_seconds} s", fmt(tr["window"], "{:.1f} s"), None))
            checks.append(("b", "429 share", "<= 3%", fmt(tr["share_429"] * 100, "{:.2f}%"), tr["share_429"] <= 0.03))
        elif s == "c":
            _, tr = contest("c", None, fixed_flags(), args.tasks_per_kind)
            checks.append(("c", "deletions/s vs SDK", ">= 1x", fmt(tr["ratio"], "{:.2f}x"),
                           tr["ratio"] is not None and tr["ratio"] >= 1))
        else:
            sys.exit(f"bench: unknown scenario {s!r} (a, b, c)")

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = [
        f"# taskreaper benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
        f"Machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}. Commit {commit}. "
        f"Emulator over HTTPS, latency {args.latency_ms} ms, seed {args.seed}"
        + (f", seed file {args.seed_file}" if args.seed_file else
           f", {args.projects} projects, {args.tasks_per_kind} per kind (a, c)") + ".",
        "",
        "| scen. | contender | deleted | window s | del/s | ratio | calls | calls/s | limit req/s | efficiency "
        "| 429 share | gap p50/p99 ms (emulator log) | call p50/p99 ms (client) | CPU s | peak RSS MiB | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, m in rows:
        lines.append(
            f"| {label} | {m['contender']} | {m['deleted']}/{m['before']} | {m['window']:.2f} | {m['del_s']:.1f} "
            f"| {fmt(m.get('ratio'), '{:.2f}x')} | {m['calls']} | {m['calls_s']:.1f} | {fmt(m['limit'], '{:.0f}')} "
            f"| {fmt(m['efficiency'] and m['efficiency'] * 100, '{:.1f}%')} | {m['share_429'] * 100:.2f}% "
            f"| {fmt(m['gap_p50'])}/{fmt(m['gap_p99'])} | {fmt(m['call_p50'])}/{fmt(m['call_p99'])} "
            f"| {m['cpu_s']:.2f} | {m['rss_mib']:.1f} | {m['ready']} |")
    lines += ["", "| scen. | measure | target | measured | met |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {what} | {target} | {got} | {'—' if ok is None else 'yes' if ok else 'NO'} |" for s, what, target, got, ok in checks]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    lines += ["", f"Child outputs and emulator logs: {workdir}"]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"bench: written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
