//! The two ways a command can end badly (SPEC §1.2), as types callers can branch on:
//! a [`Refusal`] before acting (exit 2, one `error:` line, nothing changed) and any other error
//! while acting (exit 1; the state is resumable by running the same command again).

/// Exit code when the command refused before changing anything.
pub const EXIT_REFUSED: i32 = 2;
/// Exit code when the command failed while acting (rerun to resume).
pub const EXIT_FAILED: i32 = 1;

/// Refused before acting: bad input, unsafe, or a precondition that does not hold. The message is
/// one line that says what to do; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(String);

impl Refusal {
    /// A refusal with this message (newlines are folded so it stays one line).
    pub fn new(message: impl Into<String>) -> Self {
        let m: String = message.into();
        Refusal(m.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// The exit code for a command's result, and the one line to print for an error.
pub fn exit_code_and_line(result: &anyhow::Result<()>) -> (i32, Option<String>) {
    match result {
        Ok(()) => (0, None),
        Err(e) => match e.downcast_ref::<Refusal>() {
            Some(r) => (EXIT_REFUSED, Some(format!("error: {r}"))),
            None => {
                let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
                let line = chain.join(": ").split_whitespace().collect::<Vec<_>>().join(" ");
                (EXIT_FAILED, Some(format!("error: {line}")))
            }
        },
    }
}

/// An error and its sources on one line (reqwest's own Display hides the interesting part: the
/// TLS alert, "connection refused").
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}
