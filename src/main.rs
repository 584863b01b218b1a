//! The `kube-ha` binary: parse, run, map the result to an exit code (SPEC §1.2: 0 done,
//! 1 failed while acting, 2 refused before acting, with one `error:` line on stderr).

use std::io::Write as _;

use clap::Parser as _;
use cli::Cli;
use kube_ha_core::error::{EXIT_REFUSED, exit_code_and_line};

mod cli;
mod logging;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version: stdout, exit 0
        // Bare `kube-ha` or `kube-ha sandbox`: the help with the command list, on stderr, exit 2.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        Err(e) => {
            // clap's usage errors span several lines; the contract is one line that says what to do.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("error: {first}; run kube-ha --help");
            std::process::exit(EXIT_REFUSED);
        }
    };
    logging::init();
    let result = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(cli::run(cli)),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let (code, line) = exit_code_and_line(&result);
    if let Some(line) = line {
        let _ = std::io::stdout().flush();
        eprintln!("{line}");
    }
    std::process::exit(code);
}
