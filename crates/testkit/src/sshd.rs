//! A simulated master host for SSH tests: Debian's real OpenSSH `sshd`, as a kube-up master
//! runs it, in a network and mount namespace of its own, so "`127.0.0.1:2379` on the master" is
//! that namespace's loopback and never the test machine's (reference/access-path.md §4).
//!
//! - The namespaces are held by `unshare --net --mount sleep infinity`; inside, `lo` is up and
//!   `/etc/passwd` is a private copy (bind-mounted), so accounts the "guest agent" creates exist
//!   only there.
//! - sshd runs inetd-style: [`SshHost`] listens on `<ip>:22` in the test's namespace and starts
//!   `nsenter … sshd -i -e -f <config>` per accepted connection, with the socket as its stdin and
//!   stdout. Every connection is counted ([`SshHost::connections`]): sshd's own view of how many
//!   SSH connections kube-ha made.
//! - The config is the minimal one of access-path §4 (`StrictModes no` for the temp dir,
//!   `UsePAM no`, publickey only, `PermitOpen 127.0.0.1:2379 127.0.0.1:4002`).
//! - [`SshHost::authorize`] plays the guest agent: it creates the account (as `useradd` would)
//!   and writes its authorized keys from a metadata `ssh-keys` line.
//!
//! Every process is started from the host's own thread with `PR_SET_PDEATHSIG = SIGKILL` and
//! killed when the host is dropped, so nothing outlives a test, even one that is SIGKILLed.
//! Needs root (`unshare`, `nsenter`, port 22), as CI has.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kube_ha_core::ssh::parse_entry;
use tempfile::TempDir;

/// Where Debian puts sshd.
pub const SSHD: &str = "/usr/sbin/sshd";

/// The port the simulated hosts listen on, as every master.
pub const PORT: u16 = kube_ha_core::names::SSH_PORT;

/// State shared with the accept thread.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    connections: AtomicUsize,
    children: Mutex<Vec<Child>>,
}

/// One simulated master: its namespaces, its sshd, its files.
pub struct SshHost {
    /// `<ip>:22`, where kube-ha connects.
    pub address: SocketAddrV4,
    holder_pid: u32,
    dir: TempDir,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    next_uid: AtomicUsize,
}

/// Signal the process group a child leads (each sshd is started as the leader of its own).
fn signal_group(child: &Child, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the group of our own unreaped child; no memory is involved.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// `PR_SET_PDEATHSIG = SIGKILL` for a child (it dies with the thread that forks it).
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh ed25519 key pair at `path` (and `path.pub`) made by OpenSSH's `ssh-keygen`; returns
/// its public line, `ssh-ed25519 AAAA… comment`.
pub fn keygen(path: &Path) -> String {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(path.with_extension("pub"));
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(path));
    fs::read_to_string(path.with_extension("pub"))
        .expect("public key")
        .trim()
        .to_string()
}

impl SshHost {
    /// A host listening on `ip:22` (a loopback address of a block the caller owns).
    pub fn start(ip: Ipv4Addr) -> SshHost {
        let dir = tempfile::Builder::new()
            .prefix("kube-ha-sshd-")
            .tempdir()
            .expect("tempdir");
        // sshd reads authorized keys as the user: the directories must be traversable.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::create_dir_all(dir.path().join("keys")).expect("keys dir");
        fs::set_permissions(dir.path().join("keys"), fs::Permissions::from_mode(0o755)).expect("chmod");
        keygen(&dir.path().join("ssh_host_ed25519_key"));
        fs::copy("/etc/passwd", dir.path().join("passwd")).expect("copy passwd");
        fs::write(dir.path().join("sshd_config"), sshd_config(dir.path())).expect("sshd_config");
        // A root sshd needs its privilege-separation directory (the package's tmpfiles.d makes it
        // at boot; a container may not have booted that way).
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
        fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755)).expect("chmod /run/sshd");

        let address = SocketAddrV4::new(ip, PORT);
        let listener = TcpListener::bind(address).unwrap_or_else(|e| panic!("bind {address}: {e}"));
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("sshd-{ip}"))
            .spawn({
                let shared = shared.clone();
                let dir = dir.path().to_path_buf();
                move || serve(listener, &dir, &shared, ready_tx)
            })
            .expect("spawn the sshd thread");
        let holder_pid = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the namespaces are ready");
        SshHost {
            address,
            holder_pid,
            dir,
            shared,
            thread: Some(thread),
            next_uid: AtomicUsize::new(0),
        }
    }

    /// The socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::V4(self.address)
    }

    /// Its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `nsenter` arguments that enter this host's namespaces.
    pub fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder_pid.to_string())
            .args(["--net", "--mount", "--"]);
        c
    }

    /// A shell script that runs `program` with its arguments inside this host (for processes
    /// started by others, e.g. etcd through the testkit's etcd launcher).
    pub fn launcher(&self, program: &str) -> PathBuf {
        let path = self.dir.path().join(format!("in-host-{}", program.replace('/', "_")));
        let script = format!(
            "#!/bin/sh\nexec nsenter -t {} --net --mount -- {program} \"$@\"\n",
            self.holder_pid
        );
        fs::write(&path, script).expect("launcher");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod launcher");
        path
    }

    /// The host key, `ssh-ed25519 AAAA…`.
    pub fn host_key(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("ssh_host_ed25519_key.pub")).expect("host key");
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// A new host key under the same identity (a rebuilt disk, or a man in the middle). Every
    /// later connection presents it (each `sshd -i` reads the key afresh).
    pub fn rotate_host_key(&self) {
        keygen(&self.dir.path().join("ssh_host_ed25519_key"));
    }

    /// What the guest agent does with one `ssh-keys` line: create the account if needed
    /// (`useradd -m -p '*'`: unlocked, no password) and add the key to its authorized keys.
    pub fn authorize(&self, metadata_line: &str) {
        let entry = parse_entry(metadata_line).unwrap_or_else(|| panic!("not an ssh-keys entry: {metadata_line}"));
        let user = entry.user;
        let passwd = self.dir.path().join("passwd");
        let known = fs::read_to_string(&passwd).expect("passwd");
        if !known.lines().any(|l| l.split(':').next() == Some(user)) {
            let uid = 20000 + self.next_uid.fetch_add(1, Ordering::Relaxed);
            // Appended in place: the bind mount inside the host shows this very file.
            let mut f = OpenOptions::new().append(true).open(&passwd).expect("open passwd");
            writeln!(f, "{user}:*:{uid}:{uid}::{}:/bin/sh", self.dir.path().display()).expect("append passwd");
        }
        let key_part = metadata_line.split_once(':').map(|(_, k)| k).unwrap_or_default();
        let keys = self.dir.path().join("keys").join(user);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&keys)
            .expect("keys file");
        writeln!(f, "# Added by Google\n{key_part}").expect("write keys");
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o644)).expect("chmod keys");
    }

    /// How many SSH connections sshd has served.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Freeze every sshd serving a connection (SIGSTOP to its process group: the monitor and the
    /// privilege-separated child that carries the traffic after login): to its client the master
    /// is dead (TCP still acknowledges, nothing answers).
    pub fn freeze(&self) {
        let children = self.shared.children.lock().unwrap_or_else(|e| e.into_inner());
        for child in children.iter() {
            signal_group(child, libc::SIGSTOP);
        }
    }

    /// sshd's log (every connection's `-e` output).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept.
        let _ = TcpStream::connect_timeout(&SocketAddr::V4(self.address), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sshd_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "HostKey {d}/ssh_host_ed25519_key\n\
         PidFile none\n\
         AuthorizedKeysFile {d}/keys/%u\n\
         StrictModes no\n\
         UsePAM no\n\
         AuthenticationMethods publickey\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin no\n\
         AllowTcpForwarding local\n\
         PermitOpen 127.0.0.1:2379 127.0.0.1:4002\n\
         AllowAgentForwarding no\n\
         X11Forwarding no\n\
         PermitTTY no\n\
         UseDNS no\n\
         LogLevel VERBOSE\n"
    )
}

/// The host's thread: make the namespaces, then serve connections until told to stop; kill
/// everything on the way out.
fn serve(listener: TcpListener, dir: &Path, shared: &Shared, ready: mpsc::Sender<u32>) {
    let mut holder = Command::new("unshare");
    holder
        .args(["--net", "--mount", "--propagation", "private", "sleep", "infinity"])
        .stdin(Stdio::null());
    die_with_parent(&mut holder);
    let mut holder = holder.spawn().expect("unshare");
    let pid = holder.id();
    let own = fs::read_link("/proc/self/ns/net").expect("own netns");
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read_link(format!("/proc/{pid}/ns/net")).ok().as_ref() == Some(&own) {
        assert!(Instant::now() < deadline, "unshare never entered its namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    run(Command::new("nsenter")
        .arg("-t")
        .arg(pid.to_string())
        .args(["--net", "--mount", "--", "sh", "-c"])
        .arg(format!(
            "ip link set lo up && mount --bind {}/passwd /etc/passwd",
            dir.display()
        )));
    let _ = ready.send(pid);

    let log = dir.join("sshd.log");
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let fd = OwnedFd::from(stream);
        let (Ok(stdin), Ok(stdout)) = (fd.try_clone(), fd.try_clone()) else {
            continue;
        };
        let Ok(stderr) = OpenOptions::new().create(true).append(true).open(&log) else {
            continue;
        };
        let mut sshd = Command::new("nsenter");
        sshd.arg("-t")
            .arg(pid.to_string())
            .args(["--net", "--mount", "--", SSHD, "-i", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0);
        die_with_parent(&mut sshd);
        let mut children = shared.children.lock().unwrap_or_else(|e| e.into_inner());
        // Reap the ones that ended, so none is left a zombie.
        children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        match sshd.spawn() {
            Ok(child) => children.push(child),
            Err(e) => eprintln!("sshd: {e}"),
        }
    }
    let mut children = shared.children.lock().unwrap_or_else(|e| e.into_inner());
    for child in children.iter_mut() {
        signal_group(child, libc::SIGKILL);
        let _ = child.wait();
    }
    let _ = holder.kill();
    let _ = holder.wait();
}
