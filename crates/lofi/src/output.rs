//! Writing results to standard output.
//!
//! Results go to stdout and everything else (logs, warnings, progress) to stderr, so that
//! `lofi eval ... --json > result.json` captures only the result. A closed pipe (`| head`) ends the
//! output quietly instead of panicking as `println!` would.

use anyhow::{Context, Result};
use std::io::{ErrorKind, Write};

/// Writes `text` to stdout; a reader that went away is not an error.
pub fn print_stdout(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}
