#!/usr/bin/env python3
"""Injected-bug catch rate: how many realistic one-line bugs the tests and the
suite's gate catch.

Each bug below is a one-line change a programmer could plausibly make (a sign
flipped in a formula, an off-by-one in a window or a comparison, a dropped
header field, a kiss code misread, a poll clamp lost, ...), written by hand
and different from cargo-mutants' mechanical mutations. The tool copies the
committed tree (`git archive HEAD`) to a scratch directory once, and for each
bug, one at a time:

  1. applies it (the `old` text must occur exactly once in the file, or the
     tool stops and names the bug and the file: the list has drifted from the
     code),
  2. runs the tests of the crate the file belongs to (`cargo nextest run -p
     CRATE`, fail-fast): "caught by tests" when they fail or do not build,
  3. builds the release CLI and runs the suite's gate as CI does, with fewer
     seeds (`ntplab suite --seeds 1..3 --baseline scenarios/baseline.json`):
     "caught by suite" when it fails,
  4. restores the file.

Before the bugs it runs both steps on the unmodified copy: if either fails
there, a catch would mean nothing, and the tool stops (`--skip-clean` skips
this check). A bug whose patched crate does not compile counts as caught by
tests (the compiler is part of CI) and is listed so.

    scripts/inject-bugs.py [--list] [--only ID,ID] [--seeds 1..3]
                           [--no-suite] [--no-tests] [--skip-clean]
                           [--scratch DIR] [--keep] [--max-seconds S]

Output: one line per bug (tests: caught/missed, suite: caught/missed), then
the totals, and a CSV (`--csv FILE`, default SCRATCH/../inject-bugs.csv).
Costs: per bug a build of the crate's tests and of the release CLI (in the
scratch's own target/: opt-level 1 without debug info; the first build
compiles every dependency) plus one suite run. Measured on 2026-12-03 with
the two cores shared by six helpers: 473 s for the first bug's tests alone.
Never point CARGO_TARGET_DIR at another tree's target/: workspace crates get
the same artifact names in both trees, and the other tree's next build can
take the scratch's (bugged) artifacts as fresh. The scratch directory is
deleted at the end unless --keep. Needs git, cargo and cargo-nextest.
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

# (id, file, old, new, what the bug is)
BUGS = [
    # --- source: the on-wire measurement and the reply checks -------------
    ("offset-sign-d34", "impl/proto/src/source.rs",
     "let offset = saturate((d21 + d34) >> 1);",
     "let offset = saturate((d21 - d34) >> 1);",
     "offset = ((T2-T1) - (T3-T4))/2: one term's sign flipped"),
    ("delay-half-residence", "impl/proto/src/source.rs",
     "let delay = saturate(d41 - d32).max(precision);",
     "let delay = saturate(d41 - (d32 >> 1)).max(precision);",
     "delay subtracts only half the server's residence time"),
    ("dispersion-no-phi", "impl/proto/src/source.rs",
     "let dispersion = log2_duration(repr.precision) + precision + phi_part;",
     "let dispersion = log2_duration(repr.precision) + precision;",
     "sample dispersion without the PHI x round-trip term"),
    ("bogus-origin-accepted", "impl/proto/src/source.rs",
     "if repr.origin_timestamp != out.xmt {",
     "if repr.origin_timestamp != out.xmt && repr.origin_timestamp.is_zero() {",
     "origin check only rejects zero origins: bogus replies accepted"),
    ("kod-deny-misread", "impl/proto/src/source.rs",
     "KissCode::Deny | KissCode::Rstr => {",
     "KissCode::Rstr => {",
     "DENY not recognised: the source keeps polling after a DENY kiss"),
    ("kod-rate-no-backoff", "impl/proto/src/source.rs",
     "let raised = wanted.min(cap).max(current);",
     "let raised = current;",
     "RATE kiss code does not raise the poll exponent"),
    ("leap-unsync-accepted", "impl/proto/src/source.rs",
     "if repr.leap == LeapIndicator::Unsynchronized {",
     "if repr.leap == LeapIndicator::Delete {",
     "wrong leap variant: replies from unsynchronized servers (LI 3) accepted"),
    ("stratum-16-accepted", "impl/proto/src/source.rs",
     "if repr.stratum >= 16 {",
     "if repr.stratum > 16 {",
     "off-by-one: stratum 16 replies accepted"),
    ("poll-follows-peer-up", "impl/proto/src/source.rs",
     "e = e.min(peer);",
     "e = e.max(peer);",
     "poll = max(host poll, peer poll) instead of min"),
    ("root-distance-full-delay", "impl/proto/src/source.rs",
     "let root_distance = repr.root_delay.to_duration().half() + repr.root_dispersion.to_duration();",
     "let root_distance = repr.root_delay.to_duration() + repr.root_dispersion.to_duration().half();",
     "header root-distance check halves the wrong term"),
    ("reach-shift-right", "impl/proto/src/source.rs",
     "self.reach <<= 1;",
     "self.reach >>= 1;",
     "reach register shifted the wrong way"),
    # --- filter ------------------------------------------------------------
    ("filter-weight-off-by-one", "impl/proto/src/filter.rs",
     ".map(|(i, &k)| self.stages[k].dispersion_secs(now) / 2f64.powi(i as i32 + 1))",
     ".map(|(i, &k)| self.stages[k].dispersion_secs(now) / 2f64.powi(i as i32))",
     "filter dispersion weights 2^-i instead of 2^-(i+1)"),
    ("filter-jitter-variance", "impl/proto/src/filter.rs",
     "(sum / rest.len() as f64).sqrt()",
     "sum / rest.len() as f64",
     "peer jitter is the variance, not its square root"),
    ("filter-sample-reused", "impl/proto/src/filter.rs",
     "if best.time <= tp {",
     "if best.time < tp {",
     "prime directive off by one: the same sample is used again"),
    ("filter-spike-window-halved", "impl/proto/src/filter.rs",
     "let window = 2.0 * log2_to_seconds(poll);",
     "let window = 0.5 * log2_to_seconds(poll);",
     "popcorn spike window a quarter of its size"),
    ("nstage-7", "impl/proto/src/constants.rs",
     "pub const NSTAGE: usize = 8;",
     "pub const NSTAGE: usize = 7;",
     "clock filter window one stage short"),
    # --- select ------------------------------------------------------------
    ("intersect-found-strict", "impl/proto/src/select.rs",
     "if found <= allow {",
     "if found < allow {",
     "intersection: midpoints outside allowed one fewer than falsetickers"),
    ("intersect-touching", "impl/proto/src/select.rs",
     "if l < u {",
     "if l <= u {",
     "intervals that only touch count as intersecting"),
    ("truechimer-midpoint", "impl/proto/src/select.rs",
     ".partition(|e| e.offset - e.distance <= high && e.offset + e.distance >= low);",
     ".partition(|e| e.offset >= low && e.offset <= high);",
     "truechimer = offset inside [l, u] instead of interval overlap"),
    ("cluster-one-too-few", "impl/proto/src/select.rs",
     "while chimers.len() > self.config.min_survivors.max(1) {",
     "while chimers.len() >= self.config.min_survivors.max(1) {",
     "cluster prunes one survivor below NMIN"),
    ("merit-ignores-stratum", "impl/proto/src/select.rs",
     "let merit = |e: &Entry| f64::from(e.stratum) * MAXDIST + e.distance;",
     "let merit = |e: &Entry| e.distance;",
     "survivor order ignores stratum"),
    ("combine-weight-inverted", "impl/proto/src/select.rs",
     "let x = 1.0 / e.distance;",
     "let x = e.distance;",
     "combine weights by root distance instead of its inverse"),
    ("root-distance-delay-not-halved", "impl/proto/src/select.rs",
     "MINDISP.max(secs(self.root_delay) + secs(self.delay)) / 2.0",
     "MINDISP.max(secs(self.root_delay) + secs(self.delay))",
     "root distance counts the whole delay, not half"),
    # --- system ------------------------------------------------------------
    ("stratum-not-incremented", "impl/proto/src/system.rs",
     "stratum: c.stratum.saturating_add(1).min(crate::server::STRATUM_UNSYNCHRONIZED),",
     "stratum: c.stratum.min(crate::server::STRATUM_UNSYNCHRONIZED),",
     "system stratum = peer stratum, not + 1"),
    ("root-delay-no-peer-delay", "impl/proto/src/system.rs",
     "root_delay: c.root_delay + c.delay,",
     "root_delay: c.root_delay,",
     "system root delay omits the delay to the system peer"),
    ("system-leap-dropped", "impl/proto/src/system.rs",
     "            leap: c.leap,\n",
     "            leap: LeapIndicator::NoWarning,\n",
     "system leap indicator not taken from the system peer"),
    ("startup-majority-off-by-one", "impl/proto/src/system.rs",
     "|| (2 * selection.truechimers.len() > configured && !waiting && !filling);",
     "|| (2 * selection.truechimers.len() >= configured && !waiting && !filling);",
     "startup rule: half the configured sources counts as a majority"),
    ("system-sample-reused", "impl/proto/src/system.rs",
     "self.last_used_sample.is_none_or(|t| c.time > t)",
     "self.last_used_sample.is_none_or(|t| c.time >= t)",
     "the system peer's sample is fed to the discipline again"),
    # --- server ------------------------------------------------------------
    ("server-leap-dropped", "impl/proto/src/server.rs",
     "(true, false) => (clock.leap, clock.stratum),",
     "(true, false) => (LeapIndicator::NoWarning, clock.stratum),",
     "server replies never carry the leap warning"),
    ("server-poll-no-floor", "impl/proto/src/server.rs",
     "poll.clamp(lo, hi)",
     "poll.min(hi)",
     "server's poll field loses its lower clamp"),
    ("server-origin-wrong", "impl/proto/src/server.rs",
     "origin_timestamp: if interleaved { req.receive_timestamp } else { req.transmit_timestamp },",
     "origin_timestamp: if interleaved { req.receive_timestamp } else { req.origin_timestamp },",
     "basic-mode reply echoes the request's origin, not its transmit timestamp"),
]

CRATES = [
    ("impl/proto/", "ntplab-proto"),
    ("impl/daemon/", "ntplab-daemon"),
    ("sim/", "ntplab-sim"),
    ("conformance/", "ntplab-conformance"),
    ("src/", "ntplab"),
]


def crate_of(path):
    for prefix, name in CRATES:
        if path.startswith(prefix):
            return name
    raise SystemExit(f"inject-bugs: no crate known for {path}")


def run(cmd, cwd, env, timeout, log):
    """Runs cmd; returns 'ok', 'fail' or 'timeout'. Output goes to log."""
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        try:
            p = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout"
    return "ok" if p.returncode == 0 else "fail"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the bugs and exit")
    ap.add_argument("--only", default="", help="comma-separated bug ids")
    ap.add_argument("--seeds", default="1..3", help="seeds for the suite (default 1..3)")
    ap.add_argument("--no-suite", action="store_true", help="skip the suite step")
    ap.add_argument("--no-tests", action="store_true", help="skip the crate tests")
    ap.add_argument("--skip-clean", action="store_true", help="skip the run on unmodified code")
    ap.add_argument("--scratch", default="", help="scratch directory (default: a new one under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--csv", default="", help="write the results here")
    ap.add_argument("--max-seconds", type=float, default=0, help="stop starting new bugs after this long")
    ap.add_argument("--test-timeout", type=float, default=1200)
    ap.add_argument("--suite-timeout", type=float, default=1800)
    a = ap.parse_args()

    repo = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout.strip()
    bugs = BUGS
    if a.only:
        wanted = a.only.split(",")
        unknown = [w for w in wanted if w not in {b[0] for b in BUGS}]
        if unknown:
            raise SystemExit(f"inject-bugs: unknown bug id(s): {', '.join(unknown)} (see --list)")
        bugs = [b for b in BUGS if b[0] in wanted]
    if a.list:
        for b in bugs:
            print(f"{b[0]:32} {b[1]:32} {b[4]}")
        print(f"{len(bugs)} bugs")
        return 0

    # Every bug must apply to the committed code exactly once.
    for bug_id, path, old, _new, _what in bugs:
        text = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=repo, capture_output=True, text=True).stdout
        n = text.count(old)
        if n != 1:
            raise SystemExit(f"inject-bugs: bug {bug_id}: {path} holds its text {n} times (must be once): {old!r}")

    scratch = a.scratch or tempfile.mkdtemp(prefix="ntplab-inject-")
    os.makedirs(scratch, exist_ok=True)
    log = os.path.join(scratch, "..", os.path.basename(scratch) + ".log")
    csv_path = a.csv or os.path.join(scratch, "..", os.path.basename(scratch) + ".csv")
    print(f"inject-bugs: scratch {scratch}, log {log}", flush=True)
    archive = subprocess.Popen(["git", "archive", "HEAD"], cwd=repo, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", scratch], stdin=archive.stdout, check=True)
    archive.wait()
    # The scratch release build trades speed of the simulator for build time
    # (opt-level 1, no debug info, many codegen units, incremental): each bug
    # rebuilds the core and everything above it, and incremental compilation
    # reuses what the one-line change did not touch. Results do not depend on
    # it (no fast-math).
    env = dict(os.environ, CARGO_INCREMENTAL="1", CARGO_TERM_COLOR="never")
    env.update(CARGO_TARGET_DIR=os.path.join(scratch, "target"),
               CARGO_PROFILE_RELEASE_OPT_LEVEL="1", CARGO_PROFILE_RELEASE_DEBUG="0",
               CARGO_PROFILE_RELEASE_CODEGEN_UNITS="256", CARGO_PROFILE_RELEASE_INCREMENTAL="true")
    report = os.path.join(scratch, "target", "inject-report")

    def tests(crate):
        return run(["cargo", "nextest", "run", "-p", crate, "--no-tests=pass"], scratch, env, a.test_timeout, log)

    def suite():
        if run(["cargo", "build", "--release", "-q", "--bin", "ntplab"], scratch, env, a.test_timeout, log) != "ok":
            return "fail"
        binary = os.path.join(scratch, "target", "release", "ntplab")
        return run([binary, "suite", "--seeds", a.seeds, "--baseline", "scenarios/baseline.json",
                    "--report", report], scratch, env, a.suite_timeout, log)

    started = time.time()
    try:
        if not a.skip_clean:
            for crate in sorted({crate_of(b[1]) for b in bugs}):
                if not a.no_tests and tests(crate) != "ok":
                    raise SystemExit(f"inject-bugs: {crate}'s tests fail on unmodified code (see {log})")
            if not a.no_suite and suite() != "ok":
                raise SystemExit(f"inject-bugs: the suite fails on unmodified code (see {log})")
            print("inject-bugs: unmodified code passes", flush=True)

        results = []
        for bug_id, path, old, new, what in bugs:
            if a.max_seconds and time.time() - started > a.max_seconds:
                print(f"inject-bugs: --max-seconds reached; {len(bugs) - len(results)} bugs not run", flush=True)
                break
            file = os.path.join(scratch, path)
            original = open(file).read()
            open(file, "w").write(original.replace(old, new, 1))
            try:
                t0 = time.time()
                t = "skipped" if a.no_tests else tests(crate_of(path))
                s = "skipped" if a.no_suite else suite()
            finally:
                open(file, "w").write(original)
            verdict = lambda r: {"ok": "missed", "fail": "caught", "timeout": "caught (timeout)"}.get(r, r)
            row = (bug_id, verdict(t), verdict(s), round(time.time() - t0), what)
            results.append(row)
            print(f"{bug_id:32} tests: {row[1]:16} suite: {row[2]:16} {row[3]:5} s  {what}", flush=True)

        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["bug", "tests", "suite", "seconds", "what"])
            w.writerows(results)
        n = len(results)
        by_tests = sum(r[1].startswith("caught") for r in results)
        by_suite = sum(r[2].startswith("caught") for r in results)
        by_either = sum(r[1].startswith("caught") or r[2].startswith("caught") for r in results)
        print(f"\n{n} bugs run: caught by tests {by_tests}/{n}, by the suite (seeds {a.seeds}) {by_suite}/{n}, "
              f"by either {by_either}/{n}; results in {csv_path}")
        survivors = [r[0] for r in results if not r[1].startswith("caught") and not r[2].startswith("caught")]
        if survivors:
            print("caught by neither: " + ", ".join(survivors))
        return 0
    finally:
        if not a.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
