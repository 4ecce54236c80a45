//! `ntplab serve` end to end on loopback: arguments and configuration files
//! that must be refused with a clear message (never a panic or unbounded
//! memory), errors that name what failed, and plain-text logs on a pipe.
//! Every run is bounded by `--duration` or ends at once with an error.

use std::net::UdpSocket;
use std::process::{Command, Output};

fn ntplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ntplab")).args(args).output().expect("run ntplab")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ntplab-serve-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn durations_out_of_range_are_usage_errors_not_panics() {
    for d in ["1e20", "-1", "0", "NaN", "inf", "1e9", "5 minutes"] {
        let out = ntplab(&["serve", "--listen", "127.0.0.1:0", &format!("--duration={d}")]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "--duration {d}: {err}");
        assert!(err.contains("--duration") && !err.contains("panicked"), "--duration {d}: {err}");
    }
}

#[test]
fn an_endless_config_file_is_refused_after_the_size_limit() {
    let out = ntplab(&["serve", "--config", "/dev/zero", "--duration", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/dev/zero") && err.contains("limit of 1048576 bytes"), "{err}");
}

#[test]
fn config_value_errors_name_line_and_column() {
    let dir = temp_dir("value");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "listen = [\"127.0.0.1:0\"]\n\n[[source]]\naddress = \"224.0.1.1:123\"\n").unwrap();
    let out = ntplab(&["serve", "--config", path.to_str().unwrap(), "--duration", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml:4:11:") && err.contains("multicast"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bind_failure_names_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ntplab(&["serve", "--listen", &addr, "--duration", "5"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot bind {addr}: Address already in use")), "{err}");
}

#[test]
fn running_out_of_file_descriptors_says_why_and_what_to_do() {
    let dir = temp_dir("emfile");
    let path = dir.join("many.toml");
    let mut text = String::new();
    for i in 1..=40 {
        text.push_str(&format!("[[source]]\naddress = \"127.0.0.{i}:123\"\n"));
    }
    std::fs::write(&path, text).unwrap();
    // 40 sources need 40 sockets: a limit of 24 descriptors runs out.
    let script = format!("ulimit -n 24 && exec \"$0\" serve --config {} --duration 5", path.display());
    let out = Command::new("sh").args(["-c", &script, env!("CARGO_BIN_EXE_ntplab")]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot bind") && err.contains("each listen address and each [[source]] uses a socket") && err.contains("ulimit -n"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logs_on_a_pipe_carry_no_colour_codes() {
    let out = ntplab(&["serve", "--listen", "127.0.0.1:0", "--duration", "0.3"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ntplab serve starting"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escape codes in piped logs: {err:?}");
}

#[test]
fn a_server_that_lists_itself_as_a_source_refuses_it() {
    let dir = temp_dir("self");
    for listen in ["127.0.0.1", "0.0.0.0"] {
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let path = dir.join("self.toml");
        std::fs::write(&path, format!("[[source]]\naddress = \"127.0.0.1:{port}\"\niburst = true\n")).unwrap();
        let out = ntplab(&[
            "serve",
            "--listen",
            &format!("{listen}:{port}"),
            "--local-stratum",
            "5",
            "--config",
            path.to_str().unwrap(),
            "--duration",
            "0.5",
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("source refused: it is this server") && err.contains(&format!("127.0.0.1:{port}")), "{listen}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
