//! Command line: clap definitions and the hand-off to one op per subcommand. An op never sees
//! clap types: this module turns flags plus the environment into options structs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use kube_ha_core::config::{self, Command, Config, Endpoint, OutputFormat, RawEnv, vars};
use kube_ha_core::error::Refusal;
use kube_ha_emulator::{EmulatorOptions, Machines, NoMachines};
use kube_ha_sandbox::{SandboxMachines, control};

/// kube-ha adds and removes highly-available Kubernetes master replicas on Google Compute Engine,
/// one zone at a time, driven by kube-up's environment variables.
#[derive(Debug, Parser)]
#[command(name = "kube-ha", version, about, after_help = env_help(), disable_help_subcommand = false)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

fn env_help() -> String {
    vars::help_text()
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Create the first master, or add a replica (KUBE_REPLICATE_EXISTING_MASTER=true).
    #[command(after_help = env_help())]
    Up(ActArgs),
    /// Remove a replica (KUBE_DELETE_NODES=false), or tear down a one-replica cluster.
    #[command(after_help = env_help())]
    Down(ActArgs),
    /// Show replicas, etcd members, the load balancer and certificate expiry.
    #[command(after_help = env_help())]
    Status(OutputArgs),
    /// Run the Compute Engine emulator (SPEC §6) in the foreground.
    Emulator(EmulatorArgs),
    /// Manage the local sandbox (emulator + simulated master VMs) in the background.
    Sandbox {
        /// start, stop or env.
        #[command(subcommand)]
        action: SandboxAction,
    },
}

/// Flags of `up` and `down`.
#[derive(Debug, Args)]
pub struct ActArgs {
    /// Print the plan and change nothing (also KUBE_HA_DRY_RUN=true).
    #[arg(long)]
    pub dry_run: bool,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `--output`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format on stdout (also KUBE_HA_OUTPUT).
    #[arg(long, short = 'o', value_enum)]
    pub output: Option<OutputFlag>,
}

/// Values of `--output`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFlag {
    /// For people.
    Text,
    /// One JSON document.
    Json,
}

/// Flags of `emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to serve the Compute API on (port 0 picks a free port; the first stdout line says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Boot instances that carry kube-env as simulated master VMs, keeping their files here.
    #[arg(long)]
    pub sandbox_dir: Option<PathBuf>,
    /// How long each operation takes from PENDING to DONE.
    #[arg(long, default_value_t = 0)]
    pub op_latency_ms: u64,
    /// How long a simulated VM takes to boot after its insert is DONE.
    #[arg(long, default_value_t = 0)]
    pub boot_delay_ms: u64,
    /// Claim address block N (its marker is 127.N.255.254:4999; VPC 198.18.N.0/24, external
    /// 198.19.N.0/24); default: a free N.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub ip_block: Option<u8>,
}

/// `sandbox` actions.
#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// Start the sandbox in the background (no-op when running).
    Start,
    /// Stop it and every process it started.
    Stop,
    /// Print `export` lines for eval.
    Env,
    /// Run a command inside the sandbox network, or inside one VM (exit status passed through).
    Exec(ExecArgs),
}

/// Flags of `sandbox exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run inside this VM (its network, files, hostname and processes), as `gcloud compute ssh
    /// --command` would; without it, inside the sandbox network.
    #[arg(long)]
    pub vm: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The top-level entry point after parsing: one function per mode.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        CliCommand::Emulator(a) => emulator(a).await,
        CliCommand::Up(a) => {
            with_typo_notes(async {
                let cfg = load(Command::Up, a.dry_run, a.output.output).await?;
                kube_ha_core::ops::up(&cfg).await
            })
            .await
        }
        CliCommand::Down(a) => {
            with_typo_notes(async {
                let cfg = load(Command::Down, a.dry_run, a.output.output).await?;
                kube_ha_core::ops::down(&cfg).await
            })
            .await
        }
        CliCommand::Status(o) => {
            with_typo_notes(async {
                let cfg = load(Command::Status, false, o.output).await?;
                kube_ha_core::ops::status(&cfg).await
            })
            .await
        }
        CliCommand::Sandbox { action } => {
            let dir = sandbox_dir()?;
            match action {
                SandboxAction::Start => control::start(&dir).await,
                SandboxAction::Stop => control::stop(&dir).await,
                SandboxAction::Env => control::print_env(&dir).await,
                SandboxAction::Exec(a) => sandbox_exec(dir, a).await,
            }
        }
    }
}

/// `kube-ha emulator`: the emulator in the foreground, with simulated VMs under `--sandbox-dir`
/// (their network is built on the address block the emulator claims).
async fn emulator(a: EmulatorArgs) -> anyhow::Result<()> {
    let opts = EmulatorOptions {
        listen: a.listen,
        op_latency: std::time::Duration::from_millis(a.op_latency_ms),
        boot_delay: std::time::Duration::from_millis(a.boot_delay_ms),
        ip_block: a.ip_block,
    };
    let sandbox_dir = a.sandbox_dir;
    kube_ha_emulator::serve_with(opts, move |plan| -> anyhow::Result<Arc<dyn Machines>> {
        Ok(match &sandbox_dir {
            Some(dir) => Arc::new(SandboxMachines::new(dir, plan)?),
            None => Arc::new(NoMachines),
        })
    })
    .await
}

/// `kube-ha sandbox exec`: the emulator of `KUBE_HA_COMPUTE_ENDPOINT` when set (a test's), else
/// the sandbox's; exits with the command's status.
async fn sandbox_exec(dir: PathBuf, a: ExecArgs) -> anyhow::Result<()> {
    let raw = RawEnv::from_process()?;
    let target = match raw.kube_ha_compute_endpoint.filter(|e| !e.is_empty()) {
        Some(endpoint) => control::ExecTarget::Endpoint(endpoint),
        None => control::ExecTarget::Dir(dir),
    };
    let project = raw.project.filter(|p| !p.is_empty());
    let code = control::exec(&target, a.vm.as_deref(), project.as_deref(), &a.command).await?;
    std::process::exit(code)
}

/// The sandbox state directory: `KUBE_HA_SANDBOX` when it names one, else the default.
fn sandbox_dir() -> anyhow::Result<PathBuf> {
    match std::env::var("KUBE_HA_SANDBOX") {
        Ok(v) if !v.is_empty() && v != "1" && v != "true" && v != "0" && v != "false" => Ok(PathBuf::from(v)),
        _ => control::default_dir(),
    }
}

/// Environment + flags → validated config (a [`Refusal`] on bad input), with a sandbox endpoint
/// resolved to the URL of the running sandbox (started when needed).
async fn load(command: Command, dry_run: bool, output: Option<OutputFlag>) -> anyhow::Result<Config> {
    let raw = RawEnv::from_process()?;
    let mut cfg = Config::resolve(&raw, command, || {
        control::default_dir().unwrap_or_else(|_| PathBuf::from(".kube-ha-sandbox"))
    })?;
    cfg.warnings.extend(config::typo_warnings(env_names()));
    cfg.dry_run |= dry_run;
    match output {
        Some(OutputFlag::Json) => cfg.output = OutputFormat::Json,
        Some(OutputFlag::Text) => cfg.output = OutputFormat::Text,
        None => {}
    }
    if let Endpoint::Sandbox(dir) = &cfg.endpoint {
        cfg.endpoint = Endpoint::Url(control::ensure_running(dir).await?);
    }
    Ok(cfg)
}

fn env_names() -> Vec<String> {
    std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).collect()
}

/// A refusal stays one line; a likely typo in the environment is often its cause, so say so there.
async fn with_typo_notes(f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    match f.await {
        Err(e) if e.downcast_ref::<Refusal>().is_some() => {
            let typos = config::typo_warnings(env_names());
            if typos.is_empty() {
                Err(e)
            } else {
                Err(Refusal::new(format!("{e} (note: {})", typos.join("; "))).into())
            }
        }
        other => other,
    }
}
