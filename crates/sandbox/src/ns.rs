//! Linux processes and namespaces for the sandbox: the one thread that forks every child, holder
//! processes that create and keep a set of namespaces, entering those namespaces to start a
//! process, and threads that live in a network namespace (so every socket they open is that
//! namespace's).
//!
//! # Children die with their parent
//! Every child is started with `PR_SET_PDEATHSIG = SIGKILL`, so a test binary or emulator killed
//! by SIGKILL leaves none behind. Caveat: Linux delivers that signal when the *thread* that forked
//! the child exits, not the process. A child spawned from a short-lived thread (a tokio blocking
//! pool worker retires after 10 s idle) would be killed early, so every spawn is handed to one
//! dedicated thread that lives as long as the process ([`spawn`], [`spawn_in`]).
//!
//! # Entering a host
//! A VM's namespaces are created by its holder (`unshare --pid --fork --kill-child --net --mount
//! --uts …`, see `host.rs`) and opened from `/proc/<holder>/ns/*` ([`Namespaces`]). To start a
//! process inside them, the spawner thread joins the VM's PID namespace for its children
//! (`setns(pid_for_children)`, allowed for one thread of a multi-threaded process) before it
//! forks, and returns to its own afterwards; the child joins the network, UTS and mount
//! namespaces in `pre_exec`, where it is single-threaded (a mount namespace cannot be joined by a
//! multi-threaded process). The child is then PID 2, 3, … of the VM, and dies with it: killing
//! the holder kills the VM's PID 1, and the kernel kills everything else in its PID namespace.
//!
//! # Sockets in a namespace
//! A socket belongs to the network namespace of the thread that created it, for its whole life.
//! [`NetnsRuntime`] is a thread that joins a network namespace and runs a current-thread tokio
//! runtime: every listener and connection its tasks open is that namespace's. Threads it
//! creates (tokio's blocking pool) inherit the namespace.
//!
//! Open namespace file descriptors keep a namespace alive, and so does a thread inside it:
//! whoever holds them must drop them when the host goes, or its links and routes stay.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The namespaces of one holder process, as open file descriptors (see the module doc: holding
/// them keeps the namespaces alive).
#[derive(Debug)]
pub struct Namespaces {
    net: OwnedFd,
    uts: Option<OwnedFd>,
    mnt: Option<OwnedFd>,
    /// The holder's `pid_for_children`: the VM's PID namespace.
    pid: Option<OwnedFd>,
    net_inode: u64,
}

impl Namespaces {
    /// The network namespace of process `pid` only (the VPC router's).
    pub fn net_of(pid: u32) -> Result<Namespaces> {
        let (net, net_inode) = open_ns(pid, "net")?;
        Ok(Namespaces {
            net,
            uts: None,
            mnt: None,
            pid: None,
            net_inode,
        })
    }

    /// Every namespace of a VM holder `pid`: network, UTS, mount, and the PID namespace of its
    /// children.
    pub fn host_of(pid: u32) -> Result<Namespaces> {
        let (net, net_inode) = open_ns(pid, "net")?;
        Ok(Namespaces {
            net,
            uts: Some(open_ns(pid, "uts")?.0),
            mnt: Some(open_ns(pid, "mnt")?.0),
            pid: Some(open_ns(pid, "pid_for_children")?.0),
            net_inode,
        })
    }

    /// The network namespace's inode (what `ip netns identify`, `/proc/<pid>/ns/net` and
    /// `lsns` show), to tell namespaces apart.
    pub fn net_inode(&self) -> u64 {
        self.net_inode
    }

    /// The network namespace.
    pub fn net(&self) -> BorrowedFd<'_> {
        self.net.as_fd()
    }
}

/// `/proc/<pid>/ns/<kind>`, opened, and its inode.
fn open_ns(pid: u32, kind: &str) -> Result<(OwnedFd, u64)> {
    let path = format!("/proc/{pid}/ns/{kind}");
    let file = File::open(&path).with_context(|| format!("opening {path}"))?;
    let inode = file.metadata().with_context(|| format!("stat {path}"))?.ino();
    Ok((OwnedFd::from(file), inode))
}

/// The inode of `/proc/<pid>/ns/net` (0 when the process is gone).
pub fn net_inode_of(pid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/net")).map_or(0, |m| m.ino())
}

/// Start `command` from the long-lived spawner thread, with `PR_SET_PDEATHSIG = SIGKILL` (see
/// the module doc), in this process's namespaces.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    set_parent_death_signal(&mut command, false);
    spawn_from_long_lived_thread(command, None)
}

/// Start `command` inside `ns` (see "Entering a host" in the module doc), with
/// `PR_SET_PDEATHSIG = SIGKILL`. Its working directory is the root of the mount namespace when
/// `ns` has one (joining a mount namespace resets it), else the caller's.
pub fn spawn_in(mut command: Command, ns: &Namespaces) -> io::Result<Child> {
    set_parent_death_signal(&mut command, ns.pid.is_some());
    let joins: Vec<(RawFd, libc::c_int)> = [
        Some((ns.net.as_raw_fd(), libc::CLONE_NEWNET)),
        ns.uts.as_ref().map(|fd| (fd.as_raw_fd(), libc::CLONE_NEWUTS)),
        ns.mnt.as_ref().map(|fd| (fd.as_raw_fd(), libc::CLONE_NEWNS)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let root = c"/";
    let joins_mount = ns.mnt.is_some();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (setns, chdir) on descriptors that stay open until `spawn` returns (`ns` is borrowed for
    // the whole call), with a C string built beforehand.
    unsafe {
        command.pre_exec(move || {
            for (fd, kind) in &joins {
                if libc::setns(*fd, *kind) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if joins_mount && libc::chdir(root.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn_from_long_lived_thread(command, ns.pid.as_ref().map(AsRawFd::as_raw_fd))
}

/// Run a helper program to completion (in `ns`, or in this process's namespaces), feeding it
/// `stdin`; its stdout, or an error carrying its stderr. Blocking.
pub fn run(ns: Option<&Namespaces>, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = || format!("{program} {}", args.join(" "));
    let mut child = match ns {
        Some(ns) => spawn_in(command, ns),
        None => spawn(command),
    }
    .with_context(|| format!("starting {}", what()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program that exits without reading all of it reports why on stderr.
        let _ = pipe.write_all(text.as_bytes());
    }
    // Both pipes are drained together, so a chatty program cannot block on a full one.
    let out = child.wait_with_output().with_context(what)?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            what(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Wait for `child` to exit without blocking the runtime: a pidfd becomes readable when the
/// process exits. Reaps it.
pub async fn wait_child(mut child: Child) -> io::Result<ExitStatus> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    // SAFETY: the AsyncFd owns the descriptor for its whole life and never changes it.
    let ready = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let mut guard = ready.readable().await?;
        guard.clear_ready();
    }
}

/// The exit code a shell would report for `status` (128 + signal for a killed process).
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}

/// A process that creates namespaces and keeps them alive for as long as it runs; SIGKILLed and
/// reaped when dropped (its namespaces go with it once nobody else holds them).
#[derive(Debug)]
pub struct Holder {
    child: Child,
}

impl Holder {
    /// Start `command` (e.g. `unshare … sh -c '<setup>; echo ready; exec sleep infinity'`) and wait
    /// until it prints `ready` on stdout. Its stderr goes to `log`. Blocking.
    pub fn start(mut command: Command, log: File, within: Duration) -> Result<Holder> {
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        let mut child = spawn(command).context("starting a namespace holder")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("the holder has no stdout"))?;
        let mut holder = Holder { child };
        match read_ready(stdout.as_fd(), within) {
            Ok(()) => Ok(holder),
            Err(e) => {
                let status = holder.child.try_wait().ok().flatten();
                holder.kill();
                match status {
                    Some(status) => Err(e.context(format!("the holder exited ({status})"))),
                    None => Err(e),
                }
            }
        }
    }

    /// Its pid (in this process's PID namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap (idempotent).
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Read `fd` until a line `ready` arrives, for at most `within`.
fn read_ready(fd: BorrowedFd<'_>, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no `ready` from the holder within {within:?}");
        }
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd, its count, a timeout.
        let n = unsafe { libc::poll(&mut poll, 1, millis) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("waiting for the holder");
        }
        if n == 0 {
            continue;
        }
        let mut buf = [0u8; 64];
        // SAFETY: reading into a buffer of the given length from a descriptor we borrow.
        let got = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            bail!("the holder ended its output before `ready`");
        }
        seen.extend_from_slice(&buf[..got as usize]);
        if seen.split(|b| *b == b'\n').any(|line| line == b"ready") {
            return Ok(());
        }
    }
}

/// A thread in a network namespace running a current-thread tokio runtime (see the module doc).
/// Dropping it stops the runtime (every task, so every socket, goes) without waiting.
#[derive(Debug)]
pub struct NetnsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl NetnsRuntime {
    /// Start the thread, joined to `net`'s network namespace. Blocking (until the runtime runs).
    pub fn start(name: &str, ns: &Namespaces) -> Result<NetnsRuntime> {
        let net = ns.net.try_clone().context("duplicating the netns descriptor")?;
        let (handle_tx, handle_rx) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (stopped_tx, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // SAFETY: setns(2) on a descriptor we own; it changes only this thread.
                if unsafe { libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let _ = handle_tx.send(Err(anyhow::Error::new(io::Error::last_os_error()).context("setns")));
                    return;
                }
                drop(net);
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(anyhow::Error::new(e).context("runtime")));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
                // Every task is dropped here, with its sockets.
                runtime.shutdown_timeout(Duration::from_secs(1));
                let _ = stopped_tx.send(());
            })
            .context("starting a namespace thread")?;
        let handle = handle_rx
            .recv()
            .map_err(|_| anyhow!("the namespace thread ended before its runtime ran"))??;
        Ok(NetnsRuntime {
            handle,
            stop: Some(stop),
            stopped: Some(stopped),
        })
    }

    /// Where to spawn tasks that must run in the namespace.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Stop every task and wait until the thread is done with them.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

impl Drop for NetnsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Ask the kernel to SIGKILL the child when the thread that forks it exits. A child that joins a
/// PID namespace sees its parent (outside it) as pid 0; if the parent dies before the signal
/// is armed, the child is adopted by the namespace's init (pid 1) or the machine's.
fn set_parent_death_signal(command: &mut Command, in_new_pid_ns: bool) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (prctl, getppid) and builds errors without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            let ppid = libc::getppid() as u32;
            let alive = if in_new_pid_ns { ppid == 0 } else { ppid == parent };
            if !alive {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// A spawn request for the spawner thread.
struct SpawnRequest {
    command: Command,
    /// A PID namespace for the child (see the module doc).
    pid_ns: Option<RawFd>,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// The one thread that forks every child (see the module doc). It lives as long as the process:
/// its channel's sender sits in a static and is never dropped.
static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();

fn spawn_from_long_lived_thread(command: Command, pid_ns: Option<RawFd>) -> io::Result<Child> {
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        // If the thread cannot start, `rx` is dropped with the closure and every send below
        // fails with a clear error instead of a panic.
        let _ = std::thread::Builder::new().name("spawner".into()).spawn(move || {
            let own_pid_ns = File::open("/proc/thread-self/ns/pid").map(OwnedFd::from);
            for mut request in rx {
                let result = match (request.pid_ns, &own_pid_ns) {
                    (None, _) => request.command.spawn(),
                    (Some(fd), Ok(own)) => spawn_in_pid_ns(&mut request.command, fd, own),
                    (Some(_), Err(e)) => Err(io::Error::new(e.kind(), format!("/proc/thread-self/ns/pid: {e}"))),
                };
                let _ = request.reply.send(result);
            }
        });
        tx
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send(SpawnRequest { command, pid_ns, reply })
        .map_err(|_| io::Error::other("the spawner thread is not running"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the spawner thread did not answer"))?
}

/// Fork `command` as a member of the PID namespace `target`, then return this thread to `own`.
fn spawn_in_pid_ns(command: &mut Command, target: RawFd, own: &OwnedFd) -> io::Result<Child> {
    // SAFETY: setns(2) on a descriptor the caller keeps open; it changes which PID namespace
    // this thread's children get, nothing else.
    if unsafe { libc::setns(target, libc::CLONE_NEWPID) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let spawned = command.spawn();
    // SAFETY: as above, back to the namespace this thread started in.
    if unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
        // Every later child would land in that VM: better to stop the process loudly.
        let e = io::Error::last_os_error();
        eprintln!("fatal: the spawner thread cannot return to its PID namespace: {e}");
        std::process::abort();
    }
    spawned
}

/// `path` opened for appending (created if missing): a child's stdout or stderr.
pub fn append_log(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Whether this process may create the sandbox's namespaces, links and firewall rules: it must be
/// root (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN` in the machine's namespaces).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `path` exists as an executable file.
pub fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper() -> Command {
        let mut command = Command::new("sleep");
        command.arg("30");
        command
    }

    #[test]
    fn a_missing_program_is_an_error_and_the_spawner_survives_it() {
        assert!(spawn(Command::new("/nonexistent/program")).is_err());
        let mut child = spawn(sleeper()).expect("spawn after a failure");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// The caveat in the module doc, demonstrated: PDEATHSIG follows the forking *thread*.
    #[test]
    fn children_outlive_short_lived_threads_only_through_the_spawner() {
        let mut direct = std::thread::spawn(|| {
            let mut command = sleeper();
            set_parent_death_signal(&mut command, false);
            command.spawn().expect("spawn")
        })
        .join()
        .expect("join");
        let mut via_spawner = std::thread::spawn(|| spawn(sleeper()).expect("spawn"))
            .join()
            .expect("join");
        let deadline = Instant::now() + Duration::from_secs(5);
        let killed = loop {
            if let Some(status) = direct.try_wait().expect("try_wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "forking thread exited, child lives on");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(killed.signal(), Some(libc::SIGKILL));
        assert!(via_spawner.try_wait().expect("try_wait").is_none());
        via_spawner.kill().expect("kill");
        via_spawner.wait().expect("wait");
    }

    #[test]
    fn helper_output_and_failures_are_reported() {
        let out = run(None, "sh", &["-c", "cat; echo done"], Some("in\n")).expect("runs");
        assert_eq!(out, "in\ndone\n");
        let e = run(None, "sh", &["-c", "echo why >&2; exit 3"], None).expect_err("fails");
        assert!(format!("{e:#}").contains("why"), "{e:#}");
    }

    #[tokio::test]
    async fn waiting_for_a_child_does_not_block_and_reaps_it() {
        let child = spawn({
            let mut c = Command::new("sh");
            c.args(["-c", "exit 7"]);
            c
        })
        .expect("spawn");
        let status = wait_child(child).await.expect("wait");
        assert_eq!(exit_code(status), 7);
    }
}
