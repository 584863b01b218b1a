//! Command line: clap definitions and the hand-off to one op per subcommand. An op never sees
//! clap types: this module turns flags plus the environment into options structs, installs the
//! SIGINT/SIGTERM handlers of `up` and `down`, and resolves `KUBE_HA_SANDBOX` to an endpoint.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

use kube_ha_core::config::{Command, Config, Endpoint, Flags, OutputFormat, RawEnv, SandboxChoice, vars};
use kube_ha_core::error::Refusal;
use kube_ha_core::ops::interrupt::{Interrupt, signal_name};
use kube_ha_emulator::{EmulatorOptions, Machines, MethodLatencies, NoMachines};
use kube_ha_sandbox::{SandboxMachines, control};

/// kube-ha adds and removes highly-available Kubernetes master replicas on Google Compute Engine,
/// one zone at a time, driven by kube-up's environment variables.
#[derive(Debug, Parser)]
#[command(
    name = "kube-ha",
    version,
    about,
    after_help = env_help(),
    arg_required_else_help = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

/// The operator's variables (the testing ones: `kube-ha help env --all`).
fn env_help() -> String {
    vars::help_text(false)
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
    /// Run the Compute Engine emulator (what the sandbox runs) in the foreground.
    Emulator(EmulatorArgs),
    /// Manage the local sandbox (emulator + simulated master VMs) in the background.
    #[command(arg_required_else_help = true)]
    Sandbox {
        /// start, stop or env.
        #[command(subcommand)]
        action: SandboxAction,
    },
    /// Print help: of kube-ha, of a command (`help up`), or of the environment (`help env [--all]`).
    Help(HelpArgs),
}

/// Flags of `help`.
#[derive(Debug, Args)]
pub struct HelpArgs {
    /// A command, or `env` for the environment variables.
    pub topic: Vec<String>,
    /// With `env`: also the testing-only variables.
    #[arg(long)]
    pub all: bool,
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
    /// Latencies of some collections or methods, overriding --op-latency-ms, e.g.
    /// `instances.insert=15000,disks=3000` (milliseconds; repeatable; see GET /_emulator/latency).
    #[arg(long = "op-latency", value_name = "COLLECTION[.METHOD]=MS,…", value_parser = MethodLatencies::parse)]
    pub op_latency: Vec<MethodLatencies>,
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
    /// Stop it and every process it started; the simulated cluster's state goes with it.
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
        CliCommand::Up(a) => act(Command::Up, a).await,
        CliCommand::Down(a) => act(Command::Down, a).await,
        CliCommand::Status(o) => {
            let raw = RawEnv::from_process();
            let flags = Flags {
                dry_run: false,
                output: o.output.map(OutputFlag::format),
            };
            with_typo_notes(&raw, async {
                let cfg = load(&raw, Command::Status, flags).await?;
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
        CliCommand::Help(h) => help(&h),
    }
}

impl OutputFlag {
    fn format(self) -> OutputFormat {
        match self {
            OutputFlag::Json => OutputFormat::Json,
            OutputFlag::Text => OutputFormat::Text,
        }
    }
}

/// `kube-ha up` and `kube-ha down`: SIGINT and SIGTERM stop the op at its next step boundary.
async fn act(command: Command, a: ActArgs) -> anyhow::Result<()> {
    let raw = RawEnv::from_process();
    let flags = Flags {
        dry_run: a.dry_run,
        output: a.output.output.map(OutputFlag::format),
    };
    with_typo_notes(&raw, async {
        let cfg = load(&raw, command, flags).await?;
        let interrupt = stop_on_signals()?;
        match command {
            Command::Up => kube_ha_core::ops::up(&cfg, &interrupt).await,
            _ => kube_ha_core::ops::down(&cfg, &interrupt).await,
        }
    })
    .await
}

/// The first SIGINT or SIGTERM asks the op to stop at the next step boundary and hand its lock
/// over (it then exits 130 or 143); a second one exits at once.
fn stop_on_signals() -> anyhow::Result<Interrupt> {
    let interrupt = Interrupt::new();
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let flag = interrupt.clone();
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = int.recv() => SignalKind::interrupt().as_raw_value(),
                _ = term.recv() => SignalKind::terminate().as_raw_value(),
            };
            if flag.request(sig) {
                eprintln!(
                    "{} received: stopping after the current step and handing the lock over (again to exit at once)",
                    signal_name(sig)
                );
            } else {
                eprintln!(
                    "{} again: exiting at once without handing the lock over; rerun the same command to resume (from \
                     this host at once, from another after the lock expires)",
                    signal_name(sig)
                );
                std::process::exit(128 + sig);
            }
        }
    });
    Ok(interrupt)
}

/// `kube-ha help [COMMAND | env [--all]]`.
fn help(h: &HelpArgs) -> anyhow::Result<()> {
    let mut cli = Cli::command();
    match h.topic.first().map(String::as_str) {
        None => cli.print_long_help()?,
        Some("env") => print!("{}", vars::help_text(h.all)),
        Some(name) => match cli.find_subcommand_mut(name) {
            Some(sub) => sub.print_long_help()?,
            None => {
                return Err(Refusal::new(format!(
                    "no help topic {name:?}; try kube-ha help, kube-ha help up or kube-ha help env --all"
                ))
                .into());
            }
        },
    }
    Ok(())
}

/// `kube-ha emulator`: the emulator in the foreground, with simulated VMs under `--sandbox-dir`
/// (their network is built on the address block the emulator claims).
async fn emulator(a: EmulatorArgs) -> anyhow::Result<()> {
    let mut op_latencies = MethodLatencies::new();
    for more in &a.op_latency {
        op_latencies.merge(more);
    }
    let opts = EmulatorOptions {
        listen: a.listen,
        op_latency: std::time::Duration::from_millis(a.op_latency_ms),
        op_latencies,
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
    let raw = RawEnv::from_process();
    let target = match vars::KUBE_HA_COMPUTE_ENDPOINT.set(&raw)? {
        Some(endpoint) => control::ExecTarget::Endpoint(endpoint),
        None => control::ExecTarget::Dir(dir),
    };
    let project = vars::PROJECT.set(&raw)?;
    let code = control::exec(&target, a.vm.as_deref(), project.as_deref(), &a.command).await?;
    std::process::exit(code)
}

/// The sandbox state directory: `KUBE_HA_SANDBOX` when it names one (read through the env
/// table, as `up` reads it), else the default.
fn sandbox_dir() -> anyhow::Result<PathBuf> {
    match vars::KUBE_HA_SANDBOX.set(&RawEnv::from_process())? {
        Some(SandboxChoice::Dir(dir)) => Ok(dir),
        _ => control::default_dir(),
    }
}

/// Environment + flags → validated config (a [`Refusal`] on bad input), with a sandbox endpoint
/// resolved to the URL of the running sandbox (started when needed).
async fn load(raw: &RawEnv, command: Command, flags: Flags) -> anyhow::Result<Config> {
    let mut cfg = Config::resolve(raw, command, flags, || {
        control::default_dir().unwrap_or_else(|_| PathBuf::from(".kube-ha-sandbox"))
    })?;
    if let Endpoint::Sandbox(dir) = &cfg.endpoint {
        cfg.endpoint = Endpoint::Url(control::ensure_running(dir).await?);
    }
    Ok(cfg)
}

/// A refusal stays one line; a likely typo in the environment is often its cause, so say so
/// there (when the typo itself was not the refusal: `KUBE_HA_ALLOW_UNKNOWN_VARS=true`, `status`).
async fn with_typo_notes(raw: &RawEnv, f: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    match f.await {
        Err(e) if e.downcast_ref::<Refusal>().is_some() => {
            let typos = raw.typo_notes();
            if typos.is_empty() || e.to_string().contains("did you mean") {
                Err(e)
            } else {
                Err(Refusal::new(format!("{e} (note: {})", typos.join("; "))).into())
            }
        }
        other => other,
    }
}
