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
    /// Process exit code: 1 bad input (or a failed requirement: `suite`,
    /// `probe`), 2 usage, 3 internal or I/O, 4 a server's kiss-o'-death
    /// stopped `ntplab query`, 5 `ntplab probe` got no reply at all; 0 only
    /// for [`CliError::closed_output`].
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

    /// Writing output failed. A closed pipe (`ntplab decode ... | head -1`) is
    /// no failure: see [`CliError::closed_output`].
    pub fn from_io(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return CliError::closed_output();
        }
        CliError::internal(format!("cannot write output: {e}"))
    }

    /// The reader of standard output went away: stop at once, quietly, with
    /// status 0 (as `head` expects of the command before it).
    pub fn closed_output() -> Self {
        CliError { code: 0, message: String::new() }
    }

    /// Whether this is [`CliError::closed_output`].
    pub fn is_closed_output(&self) -> bool {
        self.code == 0
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
