//! Event-count metrics (`selections`, `kiss_codes`, `ntsn`, `synchronized`)
//! and host groups (`count`, `over`) measured on real runs.

use ntplab_sim::run::{run, RunReport};
use ntplab_sim::scenario::Scenario;

fn go(text: &str) -> RunReport {
    let s = Scenario::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    run(&s, None).expect("runs")
}

fn value(r: &RunReport, name: &str) -> Option<f64> {
    r.verdicts.iter().find(|v| v.expectation.name == name).unwrap_or_else(|| panic!("no expectation {name}")).value
}

const EVENTS: &str = r#"
name = "event counts"
duration = "20m"

[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1

[[host]]
name = "rate"
address = "10.0.0.3"
role = "scripted"
behavior = { kind = "kiss", code = "RATE" }

[[host]]
name = "ntsn"
address = "10.0.0.4"
role = "scripted"
behavior = { kind = "kiss", code = "NTSN" }

[[host]]
name = "mute"
address = "10.0.0.5"
role = "scripted"
behavior = { kind = "silent" }

[[host]]
name = "good"
address = "10.0.0.2"
listen = false
clock = { offset = 0.0005 }
sources = [ { host = "server", iburst = true, poll_min = 4, poll_max = 4 } ]

[[host]]
name = "kissed"
address = "10.0.0.6"
listen = false
clock = { offset = 0.05 }
sources = [ { host = "rate", poll_min = 4, poll_max = 4 }, { host = "ntsn", poll_min = 4, poll_max = 4 } ]

[[host]]
name = "alone"
address = "10.0.0.7"
listen = false
clock = { offset = 0.05 }
sources = [ { host = "mute", poll_min = 4, poll_max = 4 } ]

[[link]]
between = ["good", "server"]
delay = "100us"

[[link]]
between = ["kissed", "rate"]

[[link]]
between = ["kissed", "ntsn"]

[[host]]
name = "skewed"
address = "10.0.0.8"
listen = false
clock = { offset = 0.05 }
sources = [ { host = "server", poll_min = 4, poll_max = 4 } ]

[[link]]
between = ["alone", "mute"]

[[link]]
between = ["skewed", "server"]
delay = "100us"
forward = { delay = "20ms" }

[[expect]]
name = "good selections"
host = "good"
metric = "selections"
min = 0

[[expect]]
name = "good synchronized"
host = "good"
metric = "synchronized"
min = 0

[[expect]]
name = "good kisses"
host = "good"
metric = "kiss_codes"
min = 0

[[expect]]
name = "kissed kisses"
host = "kissed"
metric = "kiss_codes"
min = 0

[[expect]]
name = "kissed ntsn"
host = "kissed"
metric = "ntsn"
min = 0

[[expect]]
name = "kissed selections"
host = "kissed"
metric = "selections"
min = 0

[[expect]]
name = "alone synchronized"
host = "alone"
metric = "synchronized"
max = 0

[[expect]]
name = "alone within 100 ms"
host = "alone"
metric = "synchronized"
within = "100ms"
max = 0

[[expect]]
name = "skewed synchronized"
host = "skewed"
metric = "synchronized"
max = 1

[[expect]]
name = "skewed within 100 ms"
host = "skewed"
metric = "synchronized"
within = "100ms"
max = 1

[[expect]]
name = "skewed sync time within 2 ms"
host = "skewed"
metric = "sync_time"
within = "2ms"
max = "20m"

[[expect]]
name = "skewed sync time within 100 ms"
host = "skewed"
metric = "sync_time"
within = 0.1
max = "20m"
"#;

#[test]
fn event_counts_count_what_the_daemon_did() {
    let r = go(EVENTS);
    // One server, picked once and kept.
    assert_eq!(value(&r, "good selections"), Some(1.0));
    assert_eq!(value(&r, "good synchronized"), Some(1.0));
    assert_eq!(value(&r, "good kisses"), Some(0.0));
    // Every request to a kiss sender is answered with a kiss; RATE backs the
    // client off, NTSN does not, so NTSN is most of them and both count.
    let kisses = value(&r, "kissed kisses").expect("a count");
    let ntsn = value(&r, "kissed ntsn").expect("a count");
    assert!(ntsn >= 10.0, "NTSN kisses {ntsn}");
    assert!(kisses > ntsn, "kisses {kisses} must include the RATE ones besides {ntsn} NTSN");
    assert_eq!(value(&r, "kissed selections"), Some(0.0), "kisses carry no time");
    // Nobody answers: never synchronized, and the expectation `max = 0` passes.
    let alone = r.verdicts.iter().find(|v| v.expectation.name == "alone synchronized").expect("verdict");
    assert_eq!(alone.value, Some(0.0));
    assert!(alone.passed);
    // Its clock stays 50 ms off, but without a system peer it is not
    // synchronized whatever the `within`.
    assert_eq!(value(&r, "alone within 100 ms"), Some(0.0));
    // 20 ms of one-way extra delay leaves `skewed` about 10 ms off: never
    // within the default 1 ms, but synchronized within 100 ms from its daemon's
    // first selection on.
    assert_eq!(value(&r, "skewed synchronized"), Some(0.0));
    assert_eq!(value(&r, "skewed within 100 ms"), Some(1.0));
    let t = value(&r, "skewed sync time within 100 ms").expect("a sync time");
    let first = r.hosts.iter().find(|h| h.name == "skewed").and_then(|h| h.first_synced_s).expect("selected");
    assert_eq!(t, first);
    let v = r.verdicts.iter().find(|v| v.expectation.name == "skewed sync time within 2 ms").expect("verdict");
    assert_eq!(v.value, None);
    let why = v.missing.as_deref().unwrap_or_default();
    assert!(why.contains("more than 0.002 s (`within`)"), "{why}");
}

const GROUP: &str = r#"
name = "a host group"
duration = "15m"

[[host]]
name = "server"
address = "10.0.0.1"
local_stratum = 1

[[host]]
name = "c"
address = "10.0.1.1"
count = 3
listen = false
clock = { offset = 0.01 }
sources = [ { host = "server", poll_min = 4, poll_max = 4 } ]

[[link]]
between = ["c", "server"]
delay = "100us"
forward = { loss = 0.3 }

[[expect]]
name = "max sent"
host = "c"
over = "max"
metric = "packets_sent"
min = 0

[[expect]]
name = "min sent"
host = "c"
over = "min"
metric = "packets_sent"
min = 0

[[expect]]
name = "median sent"
host = "c"
over = "median"
metric = "packets_sent"
min = 0

[[expect]]
name = "median rms"
host = "c"
over = "median"
metric = "rms_offset"
max = 1
"#;

#[test]
fn a_group_runs_each_member_and_summarizes_their_values() {
    let r = go(GROUP);
    let names: Vec<&str> = r.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["server", "c-1", "c-2", "c-3"]);
    let mut sent: Vec<f64> = r.hosts[1..].iter().map(|h| h.stats.packets_sent as f64).collect();
    sent.sort_by(f64::total_cmp);
    assert!(sent.iter().all(|&n| n > 20.0), "{sent:?}");
    assert_eq!(value(&r, "max sent"), Some(sent[2]));
    assert_eq!(value(&r, "min sent"), Some(sent[0]));
    assert_eq!(value(&r, "median sent"), Some(sent[1]));
    let mut rms: Vec<f64> = r.hosts[1..].iter().map(|h| h.stats.rms_offset().expect("samples")).collect();
    rms.sort_by(f64::total_cmp);
    assert_eq!(value(&r, "median rms"), Some(rms[1]));
    let v = r.verdicts.iter().find(|v| v.expectation.name == "max sent").expect("verdict");
    assert_eq!(v.host, "c (max over 3)");
}
