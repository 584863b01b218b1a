//! Progress for operators: one line per step on stderr, and a heartbeat line while waiting
//! (SPEC §1.2: progress to stderr, results to stdout).

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Prints step lines and wait heartbeats to stderr.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    tty: bool,
    quiet: bool,
}

impl Progress {
    /// A printer for a plan of `total` steps.
    pub fn new(total: usize) -> Self {
        Progress {
            total,
            tty: std::io::stderr().is_terminal(),
            quiet: false,
        }
    }

    /// A printer that prints nothing (status, JSON-only callers).
    pub fn quiet() -> Self {
        Progress {
            total: 0,
            tty: false,
            quiet: true,
        }
    }

    /// Say something that is not a step.
    pub fn say(&self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// Announce step `i` (0-based).
    pub fn step(&self, i: usize, what: &dyn std::fmt::Display) {
        if !self.quiet {
            eprintln!("[{}/{}] {what}", i + 1, self.total);
        }
    }

    /// The step finished.
    pub fn done(&self, started: Instant, already: bool) {
        if !self.quiet {
            let took = started.elapsed();
            eprintln!(
                "      {} ({:.1}s)",
                if already { "already done" } else { "done" },
                took.as_secs_f64()
            );
        }
    }

    /// A wait is still going: printed at most every few seconds (a spinner line on a terminal).
    pub fn waiting(&self, last: &mut Instant, started: Instant, what: &str) {
        if self.quiet {
            return;
        }
        let every = if self.tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        if last.elapsed() < every {
            return;
        }
        *last = Instant::now();
        let secs = started.elapsed().as_secs();
        if self.tty {
            const SPIN: [char; 4] = ['|', '/', '-', '\\'];
            let c = SPIN[(secs as usize) % SPIN.len()];
            eprint!("\r      {c} {what} ({secs}s)\x1b[K");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("      waiting: {what} ({secs}s)");
        }
    }

    /// End a wait line on a terminal.
    pub fn end_wait(&self) {
        if self.tty && !self.quiet {
            eprint!("\r\x1b[K");
        }
    }
}
