#!/usr/bin/env python3
"""Converts the requirement catalog (Markdown tables) into conformance/catalog.toml.

Usage: catalog_from_md.py CATALOG.md > conformance/catalog.toml

Each table row `| ID | Source | Level | Requirement | How to test |` becomes one
[[requirement]]. The statement is the first sentence of the Requirement column,
shortened to one line (at most 140 characters, cut at a word); the full text
stays in the Markdown catalog. `checks` (the checks in src/checks.rs that give
evidence) and `reason` (why a requirement without a check is not exercised)
come from the tables below: edit them here, then regenerate.
"""
import re
import sys

# Requirement ID -> check IDs (see conformance/src/checks.rs, CHECKS).
CHECKS = {
    "R5905-7.3-hdr48": ["client-rejects-short"],
    "R5905-9.2-version": ["client-rejects-bad-version"],
    "R5905-9.2-ef-fuzz": ["client-rejects-bad-extension"],
    "R5905-A.5.3-vn-copy": ["server-copies-version"],
    "R5905-3-mode-map": ["server-mode-map"],
    "R5905-9.2-mode-discard": ["client-rejects-unsolicited"],
    "R5905-7.3-stratum-tx": ["stratum-16-never-sent"],
    "R5905-7.3-refid-s1": ["refid-stratum-1"],
    "R5905-7.3-refid-s2": ["refid-upstream"],
    "R5905-9.2-reply-addr": ["server-reply-address"],
    "R4330-5-client-checks": ["client-rejects-insane"],
    "R5905-A.5.1.1-hdr-sanity": ["client-rejects-insane"],
    "R5905-6-era-wrap": ["era-wrap-no-jump"],
    "R5905-6-random-bits": ["client-transmit-random"],
    "R5905-8-offset-delay": ["offset-delay-formula", "client-sample-formula", "client-sample-offset", "client-sample-delay"],
    "R5905-8-bogus": ["client-rejects-bogus"],
    "R5905-8-duplicate": ["client-rejects-duplicate"],
    "R5905-8-xmt-clear": ["client-rejects-second-reply"],
    "R5905-A.5.1-org-zero": ["client-rejects-zero-origin"],
    "R5905-8-server-echo": ["server-echoes-origin"],
    "R5905-7.4-kod-format": ["kod-well-formed"],
    "R5905-7.4-deny-rstr": ["kod-deny-stops"],
    "R5905-7.4-rate": ["kod-rate-backoff"],
    "R5905-7.4-x-codes": ["kod-x-ignored"],
    "R5905-7.4-other": ["kod-other-no-sample"],
    "R5905-7.4-kod-ts": ["kod-no-sample"],
    "R8633-5.4-kod-origin": ["kod-bogus-origin-ignored"],
    "R8633-5.4-rate-cap": ["kod-rate-cap"],
    "R-SRV-ratelimit": ["server-no-amplification"],
    "R8633-3.4-mode7": ["server-no-amplification"],
    "R5905-7.2-poll-bounds": ["poll-bounds"],
    "R5905-11.2.1-falseticker": ["falsetickers-outvoted"],
    "R5905-11.2.3-sysvars": ["stratum-follows-peer"],
    "R5905-11.3-slew": ["slew-below-step-threshold"],
    "R5905-11.1-initial": ["unsynced-server-advertises"],
    "R8633-5.2-noinit": ["refid-never-init"],
    "R9109-3-random-port": ["client-source-port"],
}

# Reason a requirement without a check is not exercised, by section heading
# prefix; REASONS overrides per ID.
GROUP_REASONS = {
    "1.": "no check yet: needs a probe that sends crafted requests to the daemon",
    "2.": "no check yet: needs crafted packets or a property test, not a scenario",
    "3.": "no check yet: the trace does not show the client's filter state",
    "4.": "no check yet: needs a scripted kiss-o'-death sender with that behaviour",
    "5.": "no check yet: poll intervals are in the trace but this rule is not checked",
    "6.": "no check yet: the trace does not record per-source filter, selection and discipline state",
    "7.": "not exercised: the simulator has no leap-second source scenario with checks yet",
    "8.": "not exercised: neither the daemon nor the scripted peers send extension fields in scenarios",
    "9.": "not exercised: NTS-KE is not simulated (no TCP/TLS in the scenario format)",
    "10.": "not exercised: NTS is not simulated",
    "11.": "not exercised: no scenario enables interleaved mode with a check",
    "12.": "no check yet: operational rule outside what a scenario trace shows",
    "13.": "not exercised: symmetric-key authentication is not in the scenario format",
    "14.": "not exercised: NTPv5 is not simulated",
    "15.": "no check yet: needs a leap-smear scenario",
    "16.": "not exercised: Roughtime is not implemented",
    "17.": "not exercised: the PPS API is not simulated",
}
REASONS = {
    "R5905-6-ts64": "definition: covered by ntplab-proto unit tests, not by a trace check",
    "R5905-6-era-resolve": "definition: covered by ntplab-proto unit tests, not by a trace check",
    "R5905-6-diff": "property of the timestamp arithmetic: covered by ntplab-proto property tests",
    "R5905-6-short": "encoding: covered by ntplab-proto round-trip tests, not by a trace check",
    "R5905-7.3-mac": "not exercised: symmetric-key authentication is not in the scenario format",
    "R5905-9.2-crypto-nak": "not exercised: symmetric-key authentication is not in the scenario format",
    "R5905-A.5.1-bait": "not exercised: symmetric-key authentication is not in the scenario format",
    "R8633-5.3-signatures": "no check yet: counters are not in the trace (rejections are, see R5905-8-bogus)",
    "R4330-6-server-fields": "no check yet: partly covered by R5905-8-server-echo and R5905-A.5.3-vn-copy",
    "R4330-10-kod": "not exercised: the daemon has no SNTP mode",
    "R4330-10-min15": "not exercised: the daemon has no SNTP mode",
    "R5905-8-delay-clamp": "no check yet: sample events record the client's delay, but no scenario makes the raw delay negative",
    "R5905-7.3-stratum-rx": "no check yet: needs scripted peers sending stratum 0/16/LI 3 replies",
}

LEVELS = ["MUST", "SHOULD", "MAY", "ALG", "INFO"]


def level_of(text):
    """The strongest RFC 2119 keyword in the level text, else must(lc)/should(lc), ALG, INFO."""
    upper = re.sub(r"\([^)]*\)", "", text)
    words = re.findall(r"[A-Za-z]+", upper)
    if any(w in ("MUST", "SHALL", "REQUIRED") for w in words):
        return "MUST"
    if any(w in ("SHOULD", "RECOMMENDED") for w in words):
        return "SHOULD"
    if "MAY" in words:
        return "MAY"
    if "must(lc)" in text or re.search(r"\bmust\b", text):
        return "must(lc)"
    if "should(lc)" in text:
        return "should(lc)"
    if "ALG" in words:
        return "ALG"
    if "INFO" in words:
        return "INFO"
    raise SystemExit(f"unknown level {text!r}")


def one_line(text, limit=140):
    text = text.replace("`", "").strip()
    first = re.split(r"(?<=[a-z0-9)\]])\.\s+(?=[A-Z])", text)[0].rstrip(".")
    if len(first) <= limit:
        return first
    cut = first[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + " ..."


def toml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    path = sys.argv[1]
    group = None
    rows = []
    for line in open(path, encoding="utf-8"):
        m = re.match(r"^## (\d+\.) (.*)", line)
        if m:
            group = (m.group(1), m.group(2).strip())
            continue
        if not line.startswith("| R") and not line.startswith("| R-"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5:
            raise SystemExit(f"row with {len(cells)} cells: {line!r}")
        rows.append((group, cells))
    print("# The requirement catalog as data: one [[requirement]] per row of")
    print("# shared/reference/requirements-catalog.md (IDs kept). Generated by")
    print("# conformance/scripts/catalog_from_md.py; edit the script's tables, then regenerate.")
    print("#")
    print("# level: MUST | SHOULD | MAY (strongest RFC 2119 keyword of the row), must(lc) |")
    print("# should(lc) (lower-case wording), ALG (RFC 5905 algorithm), INFO (definition).")
    print("# level_text: the row's level as written. verify: the source text was not at hand.")
    print("# checks: checks (conformance/src/checks.rs) that give evidence; reason: why a")
    print("# requirement without checks is not exercised (one line).")
    seen = set()
    for (num, title), (rid, source, level, req, _how) in rows:
        if rid in seen:
            raise SystemExit(f"duplicate ID {rid}")
        seen.add(rid)
        doc, _, section = source.partition(" ")
        print()
        print("[[requirement]]")
        print(f"id = {toml_str(rid)}")
        print(f"group = {toml_str(num + ' ' + title)}")
        print(f"source = {toml_str(source)}")
        print(f"level = {toml_str(level_of(level))}")
        print(f"level_text = {toml_str(level)}")
        if "verify" in level or "verify" in source:
            print("verify = true")
        print(f"statement = {toml_str(one_line(req))}")
        checks = CHECKS.get(rid, [])
        if checks:
            print("checks = [" + ", ".join(toml_str(c) for c in checks) + "]")
        else:
            print(f"reason = {toml_str(REASONS.get(rid, GROUP_REASONS[num]))}")
    unknown = set(CHECKS) - seen
    if unknown:
        raise SystemExit(f"CHECKS names unknown IDs: {sorted(unknown)}")


main()
