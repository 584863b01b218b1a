//! The ways a command can end badly (SPEC §1.2), as types callers can branch on: a [`Refusal`]
//! before acting (exit 2, one `error:` line, nothing changed), an [`Interrupted`] run (SIGINT or
//! SIGTERM: exit 128 + the signal, the lock handed over), a [`NotHealthy`] status (exit 1, the
//! verdict is on stdout), and any other error while acting (exit 1; the state is resumable by
//! running the same command again).

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

/// Stopped by SIGINT or SIGTERM at a step boundary (the step in flight, e.g. a GCE operation,
/// was awaited), with the lock handed over and its intent kept: the same command resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// The signal number (`SIGINT` = 2, `SIGTERM` = 15).
    pub signal: i32,
    /// The step it stopped at (`step 4/13 (…)`); `None` when it stopped before changing anything.
    pub at: Option<String>,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(at) => write!(f, "interrupted at {at}; rerun the same command to resume"),
            None => f.write_str("interrupted before changing anything; rerun the same command"),
        }
    }
}

impl std::error::Error for Interrupted {}

/// `status` found the cluster degraded, locked, with leftovers or without quorum: exit 1. The
/// verdict line is already on stdout, so nothing more is printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotHealthy(pub String);

/// The exit code for a command's result, and the one line to print for an error.
pub fn exit_code_and_line(result: &anyhow::Result<()>) -> (i32, Option<String>) {
    let Err(e) = result else { return (0, None) };
    if e.downcast_ref::<NotHealthy>().is_some() {
        return (EXIT_FAILED, None);
    }
    if let Some(i) = e.downcast_ref::<Interrupted>() {
        return (128 + i.signal, Some(format!("error: {i}")));
    }
    if let Some(r) = e.downcast_ref::<Refusal>() {
        return (EXIT_REFUSED, Some(format!("error: {r}")));
    }
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let line = chain.join(": ").split_whitespace().collect::<Vec<_>>().join(" ");
    (EXIT_FAILED, Some(format!("error: {line}")))
}

/// The innermost cause of an error ("Connection refused (os error 111)"): what an operator can act on.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_to_end_has_its_exit_code() {
        assert_eq!(exit_code_and_line(&Ok(())), (0, None));
        let refused: anyhow::Result<()> = Err(Refusal::new("no").into());
        assert_eq!(exit_code_and_line(&refused), (2, Some("error: no".into())));
        let sigint: anyhow::Result<()> = Err(Interrupted {
            signal: 2,
            at: Some("step 3/9 (delete VM x in z)".into()),
        }
        .into());
        let (code, line) = exit_code_and_line(&sigint);
        assert_eq!(code, 130);
        assert_eq!(
            line.as_deref(),
            Some("error: interrupted at step 3/9 (delete VM x in z); rerun the same command to resume")
        );
        let sigterm: anyhow::Result<()> = Err(anyhow::Error::new(Interrupted { signal: 15, at: None }).context("up"));
        assert_eq!(exit_code_and_line(&sigterm).0, 143);
        let degraded: anyhow::Result<()> = Err(NotHealthy("degraded".into()).into());
        assert_eq!(exit_code_and_line(&degraded), (1, None));
        let failed: anyhow::Result<()> = Err(anyhow::anyhow!("boom").context("step 2"));
        assert_eq!(exit_code_and_line(&failed), (1, Some("error: step 2: boom".into())));
    }
}
