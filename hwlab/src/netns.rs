//! Network namespaces of one lab run: created with `ip netns add` under the
//! prefix `ntplab-<pid>-`, and all deleted when the [`Namespaces`] is
//! dropped (at the end of the run, on an error, on Ctrl-C, on a panic).

use std::process::Command;

/// Runs `ip ARGS`; an error carries the command and what `ip` said.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip`: {e} (install iproute2)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Runs `ip netns exec NS PROGRAM ARGS` and waits for it.
pub fn exec(ns: &str, program: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns, program];
    all.extend_from_slice(args);
    ip(&all)
}

/// Why the virtual lab cannot run on this machine, if it cannot: it needs
/// root (network namespaces), `ip`, `setpriv` and `/dev/net/tun`.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the virtual lab needs root (network namespaces, veth links, a TUN device)".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (the link emulator needs a TUN device)".into());
    }
    for (program, package) in [("ip", "iproute2"), ("setpriv", "util-linux")] {
        if Command::new(program).arg("-V").output().is_err() {
            return Some(format!("`{program}` is not installed (package {package})"));
        }
    }
    let probe = Namespaces::new("probe");
    let mut probe = match probe {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    if let Err(e) = probe.add("x") {
        return Some(format!("network namespaces do not work here: {e}"));
    }
    None
}

/// The namespaces of one run.
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
    names: Vec<String>,
}

impl Namespaces {
    /// An empty set whose names start with `ntplab-<pid>-<tag>-`.
    pub fn new(tag: &str) -> Result<Namespaces, String> {
        Ok(Namespaces { prefix: format!("ntplab-{}-{tag}-", std::process::id()), names: Vec::new() })
    }

    /// Creates namespace `<prefix><name>` with its loopback up; returns its full name.
    pub fn add(&mut self, name: &str) -> Result<String, String> {
        let full = format!("{}{name}", self.prefix);
        ip(&["netns", "add", &full])?;
        self.names.push(full.clone());
        exec(&full, "ip", &["link", "set", "lo", "up"])?;
        Ok(full)
    }

    /// The namespaces created so far.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in self.names.iter().rev() {
            if let Err(e) = ip(&["netns", "del", n]) {
                eprintln!("warning: {e}");
            }
        }
    }
}
