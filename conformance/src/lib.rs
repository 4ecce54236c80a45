//! ntplab conformance: the requirement catalog as data, checks over
//! simulator traces, verdicts per requirement, reports and baselines.
//!
//! Pipeline: scenario → `ntplab_sim::run::run` (trace) → [`checks`] →
//! [`suite`] (verdicts per requirement, figures per host) → [`report`]
//! (Markdown, HTML with SVG plots, JSON, JUnit XML, CSV) and [`baseline`]
//! (figures compared with a stored baseline for CI gating).
//!
//! This crate does no networking and never touches a real clock: it reads
//! traces the simulator wrote. [`probe`] holds the sans-IO half of the
//! black-box probe of other servers (`ntplab probe` owns the socket).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod catalog;
pub mod checks;
pub mod probe;
pub mod report;
pub mod suite;
pub mod trace;
