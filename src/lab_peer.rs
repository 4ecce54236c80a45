//! `ntplab lab peer`: a scenario's scripted peer (`role = "scripted"`) on a
//! real socket, answering in real time with the simulator's own responder
//! ([`ntplab_sim::peers::ScriptedPeer`]). The hardware lab starts one per
//! scripted host, in the host's namespace and on its virtual clock, with the
//! file [`ntplab_sim::scenario::ScriptedHost::scenario_text`] writes.

use crate::cli::CliError;
use ntplab_daemon::net::{DatagramSocket, Network, TokioNetwork};
use ntplab_daemon::sysclock::realtime_now;
use ntplab_sim::peers::ScriptedPeer;
use ntplab_sim::scenario::{Role, Scenario};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// Arguments of `ntplab lab peer`.
#[derive(clap::Args, Debug)]
pub struct LabPeerArgs {
    /// A scenario file with exactly one host, of role "scripted": the peer's address, port, stratum and behaviour.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Seed of the peer's private random stream (its `garbage` and `bad-version` replies, and `unsolicited` origins).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many seconds (at most a week).
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub duration: u64,
}

/// Most datagrams a peer holds for later sending (`second-reply`, `unsolicited`):
/// beyond it, the later ones of new requests are dropped.
const LATER_MAX: usize = 4096;

/// Runs `ntplab lab peer`.
pub fn run(args: &LabPeerArgs) -> Result<(), CliError> {
    let s = Scenario::load(&args.config).map_err(|e| CliError::input(e.to_string()))?;
    let [h] = &s.hosts[..] else {
        return Err(CliError::input(format!("{}: a peer's file has exactly one host, not {}", args.config.display(), s.hosts.len())));
    };
    let Role::Scripted(p) = &h.role else {
        return Err(CliError::input(format!("{}: host `{}` is not a scripted peer (role = \"scripted\")", args.config.display(), h.name)));
    };
    let mut peer = ScriptedPeer::new(p.behavior, p.stratum, args.seed);
    let address = SocketAddr::new(h.address, p.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        let socket = TokioNetwork::default().bind(address).await.map_err(|e| CliError::input(format!("cannot bind {address}: {e}")))?;
        tracing::info!(host = %h.name, %address, behavior = ?p.behavior, stratum = p.stratum, "scripted peer answering");
        let deadline = Instant::now() + Duration::from_secs(args.duration);
        // Datagrams to send later: (when, payload, to).
        let mut later: Vec<(Instant, Vec<u8>, SocketAddr)> = Vec::new();
        let mut buf = vec![0u8; 2048];
        loop {
            let next = later.iter().map(|l| l.0).min().unwrap_or(deadline).min(deadline);
            tokio::select! {
                got = socket.recv(&mut buf) => {
                    let r = match got {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "receive failed");
                            continue;
                        }
                    };
                    // The request's arrival on the host's clock (the kernel's
                    // timestamp, which the clock shim puts on it), else now.
                    let rx = r.rx_time.unwrap_or_else(realtime_now);
                    let tx = realtime_now();
                    for (after, reply) in peer.respond_all(&buf[..r.len], rx, tx) {
                        if after.is_zero() {
                            if let Err(e) = socket.send_to(&reply, r.from).await {
                                tracing::warn!(to = %r.from, error = %e, "send failed");
                            }
                        } else if later.len() < LATER_MAX {
                            later.push((Instant::now() + after, reply, r.from));
                        }
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let (due, rest): (Vec<_>, Vec<_>) = later.drain(..).partition(|l| l.0 <= now);
                    later = rest;
                    for (_, reply, to) in due {
                        if let Err(e) = socket.send_to(&reply, to).await {
                            tracing::warn!(%to, error = %e, "send failed");
                        }
                    }
                }
            }
        }
        tracing::info!(host = %h.name, replies = peer.replies(), "scripted peer done");
        Ok(())
    })
}
