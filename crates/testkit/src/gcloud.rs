//! The real `gcloud` against an emulator, for the tests that replay kube-up.sh's and
//! kube-down.sh's command lines: `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=<endpoint>/compute/v1/`,
//! `CLOUDSDK_AUTH_DISABLE_CREDENTIALS=True`, a throwaway `CLOUDSDK_CONFIG` directory, the
//! project in `CLOUDSDK_CORE_PROJECT`, and no prompts, usage reporting, update checks or
//! surveys. Every other `CLOUDSDK_*` variable of the caller's environment is dropped, so a
//! developer's own gcloud settings cannot leak in (or out to real GCE).
//!
//! The binary is `KUBE_HA_GCLOUD` when set, else `gcloud` on `PATH` (google-cloud-cli).

use std::path::PathBuf;
use std::process::{Command, Output};

/// gcloud configured for one emulator and one project.
pub struct Gcloud {
    bin: PathBuf,
    config: tempfile::TempDir,
    endpoint: String,
    project: String,
}

/// What one gcloud run did.
#[derive(Debug)]
pub struct Run {
    /// The command line (for messages).
    pub command: String,
    /// Its exit status (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Run {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl Gcloud {
    /// gcloud for the emulator at `endpoint` (`http://127.0.0.1:PORT`) and `project`.
    pub fn new(endpoint: &str, project: &str) -> Gcloud {
        let bin = std::env::var_os("KUBE_HA_GCLOUD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("gcloud"));
        Gcloud {
            bin,
            config: tempfile::tempdir().expect("a CLOUDSDK_CONFIG directory"),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            project: project.to_string(),
        }
    }

    /// The command, environment set.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CLOUDSDK_") {
                cmd.env_remove(&name);
            }
        }
        cmd.env("CLOUDSDK_CONFIG", self.config.path())
            .env(
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE",
                format!("{}/compute/v1/", self.endpoint),
            )
            .env("CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "True")
            .env("CLOUDSDK_CORE_PROJECT", &self.project)
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
            .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
            .env("CLOUDSDK_SURVEY_DISABLE_PROMPTS", "true")
            .env("CLOUDSDK_CORE_DISABLE_FILE_LOGGING", "true")
            .stdin(std::process::Stdio::null());
        cmd
    }

    /// Run `gcloud <args>`.
    pub fn run_args(&self, args: &[String]) -> Run {
        let command = format!("gcloud {}", args.join(" "));
        let out: Output = self.command().args(args).output().unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (install google-cloud-cli, or point KUBE_HA_GCLOUD at gcloud)",
                self.bin.display()
            )
        });
        Run {
            command,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run a command line written as in a shell script (`gcloud compute instances list --filter
    /// "name ~ '^m(-...)?'"`; the leading `gcloud` is optional; see [`words`]).
    pub fn run(&self, line: &str) -> Run {
        let mut args = words(line);
        if args.first().map(String::as_str) == Some("gcloud") {
            args.remove(0);
        }
        self.run_args(&args)
    }

    /// Run a command line, which must succeed; its stdout.
    pub fn ok(&self, line: &str) -> String {
        let run = self.run(line);
        assert!(
            run.success(),
            "{} exited {:?}\nstdout: {}\nstderr: {}",
            run.command,
            run.code,
            run.stdout,
            run.stderr
        );
        run.stdout
    }

    /// Run a command line, which must fail; its stderr.
    pub fn fails(&self, line: &str) -> String {
        let run = self.run(line);
        assert!(
            !run.success(),
            "{} should have failed\nstdout: {}",
            run.command,
            run.stdout
        );
        run.stderr
    }
}

/// A command line split into words as a shell does it for the lines of kube-up.sh: on
/// whitespace, with `'…'` and `"…"` quoting (no escapes, no expansion); quotes join with what
/// touches them (`--filter="name ~ 'x'"` is one word).
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(ch);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => out.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "unbalanced quote in {line:?}");
    out.extend(word);
    out
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn command_lines_split_like_a_shell_splits_them() {
        assert_eq!(
            words(r#"gcloud compute instances list --filter "name ~ '^m(-...)?'" --format "value(name,zone)""#),
            [
                "gcloud",
                "compute",
                "instances",
                "list",
                "--filter",
                "name ~ '^m(-...)?'",
                "--format",
                "value(name,zone)"
            ]
        );
        assert_eq!(words("a  --x='y z'b ''"), ["a", "--x=y zb", ""]);
    }
}
