//! `kube-ha sandbox start|stop|env|exec` and `KUBE_HA_SANDBOX`: the emulator, with simulated VMs,
//! as a background service under a state directory, and running commands inside its network or
//! one of its VMs.
//!
//! ```text
//! <dir>/emulator.pid   pid of the running emulator (only while it runs)
//! <dir>/endpoint       its Compute endpoint, http://127.0.0.1:PORT (only while it runs)
//! <dir>/emulator.log   its stdout and stderr, appended across runs
//! <dir>/lock           flock'ed while a start or stop is in progress (two `start`s at once
//!                      would otherwise both start one)
//! <dir>/vms/           the emulator's --sandbox-dir: VM files, disks, the VPC's log (see layout.rs)
//! ```
//!
//! The emulator runs in its own session (`setsid`), so it survives the shell and the command
//! that started it; its VMs (holders, and everything inside them) die with it (PDEATHSIG). "Running" means: the pid file
//! names a live process whose command line is an emulator for this directory (so a recycled
//! pid is never mistaken for it).
//!
//! Progress goes to stderr; `env` prints its `export` lines on stdout, for `eval`.
//!
//! `exec` ([`exec`]) asks the running emulator where its hosts are (`GET /_emulator/hosts`: the
//! holder pid and network namespace of the VPC router and of each VM) and runs the command inside:
//! without a VM, in the router's network namespace (it reaches every address the sandbox owns,
//! internal and external, and nothing else; a bastion on the VPC would need a host of its own
//! and an internal IP no GCE record explains), with the machine's files; with a VM, in all its
//! namespaces (its network, files, hostname and processes), as `gcloud compute ssh --command`
//! runs a command on a VM. The command's exit status is passed through.
//!
//! The sandbox needs root: `start`, `env` and `exec` refuse otherwise (one `error:` line).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use kube_ha_core::error::Refusal;

use super::ns::{self, Namespaces};

/// How long a starting emulator may take to print its endpoint (it binds at once; this covers
/// a loaded machine).
const START_WITHIN: Duration = Duration::from_secs(30);

/// How long an endpoint may take to answer `GET /_emulator/state`.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// How long `stop` waits after SIGTERM before SIGKILL: the emulator stops its VMs first, each
/// within a couple of seconds.
const STOP_WITHIN: Duration = Duration::from_secs(20);

/// Poll interval of every wait here.
const POLL: Duration = Duration::from_millis(25);

/// `$XDG_STATE_HOME/kube-ha/sandbox`, else `~/.local/state/kube-ha/sandbox`.
pub fn default_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("kube-ha/sandbox"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/state/kube-ha/sandbox")),
        None => bail!("neither XDG_STATE_HOME nor HOME is set; set KUBE_HA_SANDBOX to a directory"),
    }
}

/// The files of one sandbox directory.
struct Files {
    dir: PathBuf,
}

impl Files {
    /// Create `dir` if needed; every path is absolute (the emulator's command line carries
    /// them, and `stop` finds stragglers by them).
    fn create(dir: &Path) -> Result<Files> {
        fs::create_dir_all(dir).with_context(|| format!("creating the sandbox dir {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        Ok(Files { dir })
    }

    fn pid(&self) -> PathBuf {
        self.dir.join("emulator.pid")
    }
    fn endpoint(&self) -> PathBuf {
        self.dir.join("endpoint")
    }
    fn log(&self) -> PathBuf {
        self.dir.join("emulator.log")
    }
    fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }
    fn machines(&self) -> PathBuf {
        self.dir.join("vms")
    }

    /// Hold the directory's lock until the returned file is dropped.
    async fn lock_dir(&self) -> Result<File> {
        let path = self.lock();
        tokio::task::spawn_blocking(move || -> Result<File> {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.lock().with_context(|| format!("locking {}", path.display()))?;
            Ok(file)
        })
        .await
        .context("the lock thread panicked")?
    }

    /// The pid of this directory's running emulator, if one runs (see the module doc).
    fn running_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.pid()).ok()?.trim().parse().ok()?;
        let cmdline = process_cmdline(pid)?;
        let ours = cmdline.iter().any(|a| a == "emulator") && cmdline.iter().any(|a| Path::new(a) == self.machines());
        (ours && is_alive(pid)).then_some(pid)
    }

    fn forget_running(&self) -> Result<()> {
        for path in [self.pid(), self.endpoint()] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        Ok(())
    }
}

/// Whether `ensure` found the sandbox running or started it.
enum Found {
    AlreadyRunning { pid: u32 },
    Started,
}

/// Make sure the sandbox under `dir` runs; return its Compute endpoint. Says so on stderr when
/// it had to start it.
pub async fn ensure_running(dir: &Path) -> Result<String> {
    let (endpoint, _) = ensure(dir).await?;
    Ok(endpoint)
}

/// The one-line refusal for a user who is not root.
fn require_root() -> Result<()> {
    if ns::is_root() {
        return Ok(());
    }
    Err(Refusal::new(
        "the sandbox's VMs need root (network namespaces, veth links, nftables): run kube-ha as root, e.g. sudo -E kube-ha …",
    )
    .into())
}

async fn ensure(dir: &Path) -> Result<(String, Found)> {
    require_root()?;
    let files = Files::create(dir)?;
    let _lock = files.lock_dir().await?;
    if let Some(pid) = files.running_pid() {
        let endpoint = fs::read_to_string(files.endpoint())
            .map(|s| s.trim().to_string())
            .with_context(|| {
                format!(
                    "the sandbox runs (pid {pid}) but {} is missing; run `kube-ha sandbox stop`",
                    files.endpoint().display()
                )
            })?;
        wait_answering(&endpoint, ANSWER_WITHIN).await.with_context(|| {
            format!(
                "the sandbox at {} runs (pid {pid}) but does not answer; run `kube-ha sandbox stop`, then start it again",
                files.dir.display()
            )
        })?;
        return Ok((endpoint, Found::AlreadyRunning { pid }));
    }
    let endpoint = start_emulator(&files).await?;
    Ok((endpoint, Found::Started))
}

/// Spawn the emulator detached, wait for its endpoint line, record it, wait until it answers.
async fn start_emulator(files: &Files) -> Result<String> {
    // Stale files of an emulator that died (killed, machine rebooted).
    files.forget_running()?;
    let log_path = files.log();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the kube-ha binary to start the emulator")?;
    let mut command = Command::new(&exe);
    command
        .args(["emulator", "--listen", "127.0.0.1:0", "--sandbox-dir"])
        .arg(files.machines())
        // A daemon must not keep the caller's working directory busy (or deleted under it).
        .current_dir(&files.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log file")?)
        .stderr(log);
    if std::env::var_os("KUBE_HA_LOG").is_none() {
        // The log is the only way to see what the VMs did: say it at info level.
        command.env("KUBE_HA_LOG", "kube_ha=info");
    }
    // The log is a file, not a terminal: no colour escapes in it.
    command.env("NO_COLOR", "1");
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    eprintln!("starting the sandbox in {}", files.dir.display());
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {} emulator", exe.display()))?;
    let pid = child.id();

    let deadline = Instant::now() + START_WITHIN;
    let endpoint = loop {
        if let Some(endpoint) = endpoint_line(&log_path, offset)? {
            break endpoint;
        }
        if let Some(status) = child.try_wait().context("waiting for the emulator")? {
            bail!(
                "the sandbox emulator exited ({status}) before it listened; {}:\n{}",
                log_path.display(),
                log_tail(&log_path, offset)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the sandbox emulator printed no endpoint within {START_WITHIN:?}; {}:\n{}",
                log_path.display(),
                log_tail(&log_path, offset)
            );
        }
        tokio::time::sleep(POLL).await;
    };
    write_atomically(&files.pid(), &format!("{pid}\n"))?;
    write_atomically(&files.endpoint(), &format!("{endpoint}\n"))?;
    wait_answering(&endpoint, ANSWER_WITHIN).await.with_context(|| {
        format!(
            "the sandbox emulator (pid {pid}) does not answer; see {}",
            log_path.display()
        )
    })?;
    eprintln!("sandbox started: {endpoint} (pid {pid}, log {})", log_path.display());
    Ok(endpoint)
}

/// `sandbox start`: start it, or say it already runs.
pub async fn start(dir: &Path) -> Result<()> {
    let (endpoint, found) = ensure(dir).await?;
    if let Found::AlreadyRunning { pid } = found {
        eprintln!("sandbox already running: {endpoint} (pid {pid}); nothing to do");
    }
    Ok(())
}

/// `sandbox stop`: SIGTERM, a bounded wait, SIGKILL; then no process of this sandbox may remain
/// (stragglers are killed); the pid and endpoint files go. Stopping a stopped sandbox is fine.
pub async fn stop(dir: &Path) -> Result<()> {
    if !dir.exists() {
        eprintln!("no sandbox at {}: nothing to stop", dir.display());
        return Ok(());
    }
    let files = Files::create(dir)?;
    let _lock = files.lock_dir().await?;
    let was_running = files.running_pid();
    match was_running {
        Some(pid) => {
            eprintln!("stopping the sandbox (pid {pid})");
            signal(pid, libc::SIGTERM);
            if !wait_gone(pid, STOP_WITHIN).await {
                eprintln!("the sandbox did not exit within {STOP_WITHIN:?} of SIGTERM: sending SIGKILL");
                signal(pid, libc::SIGKILL);
                if !wait_gone(pid, Duration::from_secs(5)).await {
                    bail!("the sandbox emulator (pid {pid}) survived SIGKILL");
                }
            }
        }
        None => eprintln!("the sandbox at {} is not running", files.dir.display()),
    }
    let killed = kill_stragglers(&files).await?;
    if killed > 0 {
        eprintln!("killed {killed} leftover sandbox process(es)");
    }
    files.forget_running()?;
    if was_running.is_some() || killed > 0 {
        eprintln!("sandbox stopped");
    }
    Ok(())
}

/// `sandbox env`: `export` lines for `eval`, starting the sandbox if needed.
pub async fn print_env(dir: &Path) -> Result<()> {
    let endpoint = ensure_running(dir).await?;
    println!("export KUBE_HA_COMPUTE_ENDPOINT={endpoint}\nexport PROJECT=sandbox");
    Ok(())
}

/// Which emulator `exec` asks: a sandbox dir's running one, or one at a Compute endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecTarget {
    /// The sandbox under this state dir (`KUBE_HA_SANDBOX`, or the default).
    Dir(PathBuf),
    /// The emulator at this endpoint (`KUBE_HA_COMPUTE_ENDPOINT`, e.g. a test's).
    Endpoint(String),
}

/// `sandbox exec [--vm NAME] -- COMMAND…`: run `command` inside the sandbox's network, or inside
/// VM `vm` (see the module doc); its exit code. `project` picks among VMs of one name in several
/// projects.
pub async fn exec(target: &ExecTarget, vm: Option<&str>, project: Option<&str>, command: &[String]) -> Result<i32> {
    require_root()?;
    let Some((program, args)) = command.split_first() else {
        return Err(Refusal::new("sandbox exec needs a command: kube-ha sandbox exec [--vm NAME] -- COMMAND…").into());
    };
    let endpoint = match target {
        ExecTarget::Endpoint(e) => e.trim_end_matches('/').to_string(),
        ExecTarget::Dir(dir) => running_endpoint(dir)?,
    };
    let hosts = fetch_hosts(&endpoint).await?;
    let (pid, netns, what) = pick_host(&hosts, vm, project).map_err(|m| anyhow::Error::new(Refusal::new(m)))?;
    if ns::net_inode_of(pid) != netns {
        return Err(Refusal::new(format!(
            "{what} just stopped (its holder pid {pid} is gone); check `kube-ha status`"
        ))
        .into());
    }
    let namespaces = match vm {
        Some(_) => Namespaces::host_of(pid),
        None => Namespaces::net_of(pid),
    }
    .with_context(|| format!("entering {what}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let child = ns::spawn_in(cmd, &namespaces).with_context(|| format!("starting {program} in {what}"))?;
    drop(namespaces);
    let status = ns::wait_child(child)
        .await
        .with_context(|| format!("waiting for {program}"))?;
    Ok(ns::exit_code(status))
}

/// The endpoint of the emulator running for `dir`, or a refusal saying how to start one.
fn running_endpoint(dir: &Path) -> Result<String> {
    let refuse = || {
        anyhow::Error::new(Refusal::new(format!(
            "no sandbox runs at {}: start it with `kube-ha sandbox start`",
            dir.display()
        )))
    };
    if !dir.is_dir() {
        return Err(refuse());
    }
    let files = Files::create(dir)?;
    if files.running_pid().is_none() {
        return Err(refuse());
    }
    fs::read_to_string(files.endpoint())
        .map(|s| s.trim().to_string())
        .map_err(|_| refuse())
}

/// `GET <endpoint>/_emulator/hosts`.
async fn fetch_hosts(endpoint: &str) -> Result<Value> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(ANSWER_WITHIN)
        .build()
        .context("building an HTTP client")?;
    let url = format!("{endpoint}/_emulator/hosts");
    let reply = http
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {:#}", anyhow::Error::new(e)))?;
    if reply.status().as_u16() == 404 {
        return Err(Refusal::new(format!(
            "the emulator at {endpoint} simulates no hosts: start it with --sandbox-dir (or `kube-ha sandbox start`)"
        ))
        .into());
    }
    let reply = reply.error_for_status().with_context(|| url.clone())?;
    reply.json().await.with_context(|| format!("{url}: not JSON"))
}

/// The (pid, netns inode, description) of the host to enter, or why there is none.
fn pick_host(
    hosts: &Value,
    vm: Option<&str>,
    project: Option<&str>,
) -> std::result::Result<(u32, u64, String), String> {
    let numbers = |v: &Value| -> Option<(u32, u64)> {
        Some((u32::try_from(v.get("pid")?.as_u64()?).ok()?, v.get("netns")?.as_u64()?))
    };
    let Some(name) = vm else {
        return numbers(&hosts["network"])
            .map(|(pid, netns)| (pid, netns, "the sandbox network".to_string()))
            .ok_or_else(|| "the sandbox has no network yet".to_string());
    };
    let vms: Vec<&Value> = hosts["vms"].as_array().into_iter().flatten().collect();
    let found: Vec<&Value> = vms
        .iter()
        .copied()
        .filter(|v| v["name"] == name)
        .filter(|v| project.is_none_or(|p| v["project"] == p))
        .collect();
    match found.as_slice() {
        [one] => numbers(one)
            .map(|(pid, netns)| (pid, netns, format!("VM {name}")))
            .ok_or_else(|| format!("the emulator's record of VM {name} has no pid")),
        [] => {
            let running: Vec<&str> = vms.iter().filter_map(|v| v["name"].as_str()).collect();
            Err(format!(
                "no running VM named {name} in the sandbox (running: {}); see `kube-ha status`",
                if running.is_empty() {
                    "none".to_string()
                } else {
                    running.join(", ")
                }
            ))
        }
        several => {
            let places: Vec<String> = several
                .iter()
                .map(|v| {
                    format!(
                        "{}/{}",
                        v["project"].as_str().unwrap_or("?"),
                        v["zone"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            Err(format!(
                "several VMs are named {name} ({}): set PROJECT to the one you mean",
                places.join(", ")
            ))
        }
    }
}

/// The endpoint from the first `listening on http://…` line written after `offset`.
fn endpoint_line(log: &Path, offset: u64) -> Result<Option<String>> {
    let text = read_from(log, offset)?;
    Ok(text
        .lines()
        .find_map(|l| l.trim().strip_prefix("listening on "))
        .filter(|e| e.starts_with("http://"))
        .map(str::to_string))
}

/// The log written since `offset`, last 20 lines, for an error message.
fn log_tail(log: &Path, offset: u64) -> String {
    let text = read_from(log, offset).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn read_from(path: &Path, offset: u64) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Write via a temporary file and rename, so a reader never sees half a pid or endpoint.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Poll `GET <endpoint>/_emulator/state` until it is 2xx.
async fn wait_answering(endpoint: &str, within: Duration) -> Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building an HTTP client")?;
    let url = format!("{endpoint}/_emulator/state");
    let deadline = Instant::now() + within;
    loop {
        let last = match http.get(&url).send().await {
            Ok(reply) if reply.status().is_success() => return Ok(()),
            Ok(reply) => format!("HTTP {}", reply.status()),
            // `{:#}` prints the whole source chain (refused, reset…), which reqwest's own
            // Display hides.
            Err(e) => format!("{:#}", anyhow::Error::new(e)),
        };
        if Instant::now() > deadline {
            bail!("{url}: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A process's arguments, `None` if it is gone (or a zombie, whose cmdline reads empty).
fn process_cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Exists and is not a zombie (an exited child of a long-lived parent stays a zombie until
/// reaped; it holds nothing).
fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory effects. The pid was checked to be this sandbox's just
        // before (see `running_pid` and `stragglers`).
        unsafe { libc::kill(pid, signal) };
    }
}

async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while is_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// Processes this sandbox started that are still alive: etcd members and emulators whose
/// command line names a path in the sandbox dir. Other processes that merely mention the dir
/// (someone's `tail -f emulator.log`) are not ours to kill; they are reported.
fn stragglers(files: &Files) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut ours = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Some(args) = process_cmdline(pid) else {
            continue;
        };
        let mentions = args.iter().any(|a| {
            let value = a.split_once('=').map_or(a.as_str(), |(_, v)| v);
            Path::new(value).starts_with(&files.dir)
        });
        if !mentions {
            continue;
        }
        let program = args
            .first()
            .and_then(|a| Path::new(a).file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let etcd_binary = super::etcd_proc::default_binary();
        let is_etcd = program == "etcd" || etcd_binary.file_name().is_some_and(|n| n.to_string_lossy() == program);
        let is_emulator = args.iter().any(|a| a == "emulator") && args.iter().any(|a| a == "--sandbox-dir");
        // A VM's or the router's namespace holder (see host.rs, vpc.rs).
        let is_holder = program == "unshare";
        if is_etcd || is_emulator || is_holder {
            ours.push(pid);
        } else {
            eprintln!(
                "note: process {pid} ({}) still uses {}; left alone",
                args.join(" "),
                files.dir.display()
            );
        }
    }
    ours
}

/// SIGKILL every straggler and wait (bounded) until they are gone. Returns how many there were.
async fn kill_stragglers(files: &Files) -> Result<usize> {
    let pids = stragglers(files);
    for pid in &pids {
        signal(*pid, libc::SIGKILL);
    }
    for pid in &pids {
        if !wait_gone(*pid, Duration::from_secs(5)).await {
            bail!("process {pid} of the sandbox survived SIGKILL");
        }
    }
    Ok(pids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_read_from_this_run_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("emulator.log");
        fs::write(&log, "listening on http://127.0.0.1:1\n").expect("write");
        let offset = fs::metadata(&log).expect("stat").len();
        assert_eq!(endpoint_line(&log, offset).expect("read"), None);
        let mut text = fs::read_to_string(&log).expect("read");
        text.push_str("listening on http://127.0.0.1:2\nip block 127.9.0.0/16\n");
        fs::write(&log, text).expect("write");
        assert_eq!(
            endpoint_line(&log, offset).expect("read").as_deref(),
            Some("http://127.0.0.1:2")
        );
    }

    #[test]
    fn a_pid_file_naming_another_program_is_not_a_running_sandbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::create(dir.path()).expect("files");
        // This test process is alive but is not an emulator for this dir.
        fs::write(files.pid(), format!("{}\n", std::process::id())).expect("write");
        assert_eq!(files.running_pid(), None);
        fs::write(files.pid(), "not a pid").expect("write");
        assert_eq!(files.running_pid(), None);
        files.forget_running().expect("forget");
        files.forget_running().expect("forget twice");
        assert!(!files.pid().exists());
    }

    #[test]
    fn exec_picks_the_network_or_exactly_one_vm() {
        let hosts = serde_json::json!({
            "network": {"pid": 10, "netns": 100},
            "vms": [
                {"project": "p", "zone": "z", "name": "m", "pid": 11, "netns": 101},
                {"project": "q", "zone": "z", "name": "x", "pid": 12, "netns": 102},
                {"project": "r", "zone": "z", "name": "x", "pid": 13, "netns": 103}
            ]
        });
        assert_eq!(pick_host(&hosts, None, None).map(|h| h.0), Ok(10));
        assert_eq!(pick_host(&hosts, Some("m"), None).map(|h| (h.0, h.1)), Ok((11, 101)));
        let missing = pick_host(&hosts, Some("n"), None).expect_err("unknown");
        assert!(missing.contains("running: m, x, x"), "{missing}");
        assert!(
            pick_host(&hosts, Some("x"), None)
                .expect_err("ambiguous")
                .contains("PROJECT")
        );
        assert_eq!(pick_host(&hosts, Some("x"), Some("r")).map(|h| h.0), Ok(13));
    }

    #[test]
    fn this_process_is_alive_and_a_missing_one_is_not() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }
}
