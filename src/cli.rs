//! Shared pieces of the command line: output formats and errors with exit codes.

use std::fmt;

/// Output format of commands that print packets or results.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Indented, human-readable text.
    Text,
    /// JSON (one object per line for streams).
    Json,
}

/// An error that ends a command, with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    /// Process exit code: 1 bad input, 2 usage, 3 internal or I/O.
    pub code: u8,
    /// What went wrong and, where possible, what to do.
    pub message: String,
}

impl CliError {
    /// The input (a packet, a file) could not be used.
    pub fn input(message: impl Into<String>) -> Self {
        CliError { code: 1, message: message.into() }
    }

    /// The command line itself is wrong.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError { code: 2, message: message.into() }
    }

    /// Something failed that is not the user's input.
    pub fn internal(message: impl Into<String>) -> Self {
        CliError { code: 3, message: message.into() }
    }

    /// Writing output failed.
    pub fn from_io(e: std::io::Error) -> Self {
        CliError::internal(format!("cannot write output: {e}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
