//! A VM's serial port 3, filled as on a kube-up master: `master.yaml`'s
//! `kube-bootstrap-logs-forwarder.service` runs `journalctl --output short-iso --unit
//! kube-master-installation --unit kube-master-configuration --unit kubelet` into `/dev/ttyS2`, so
//! the port holds the boot scripts' output in journal form — their own lines, configure-helper's
//! `[cloud.kubernetes.monitoring.proto.SerialportLog]` record of every step (`STARTED`,
//! `COMPLETED`, or `ERROR` from the `EXIT` trap of the step that died), and systemd's lines about
//! the two units. The emulator serves it as `getSerialPortOutput?port=3` (through `registry.rs`),
//! which is where `kube-ha status` reads why a boot stopped, on GCE as here; a copy goes to
//! `logs/serial-port-3.log` in the VM dir for people.
//!
//! The pids in the journal lines are invented (there is no such process); everything else has the
//! forms the scripts and systemd print.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::configure_helper::Script;

pub use kube_ha_core::names::{BOOT_LOG_SERIAL_PORT as BOOT_LOG_PORT, BOOT_STEP_RECORD as SERIALPORT_LOG};

/// A step record's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// `log-proto … STARTED`.
    Started,
    /// `log-proto … COMPLETED`.
    Completed,
    /// `log-error`: the step's `EXIT` trap.
    Error,
}

impl StepStatus {
    fn as_str(self) -> &'static str {
        match self {
            StepStatus::Started => "STARTED",
            StepStatus::Completed => "COMPLETED",
            StepStatus::Error => "ERROR",
        }
    }
}

/// One VM's serial port 3.
#[derive(Debug)]
pub struct SerialConsole {
    host: String,
    text: Mutex<String>,
    copy: Option<PathBuf>,
    started: Mutex<BTreeMap<&'static str, Instant>>,
}

impl SerialConsole {
    /// The console of VM `host`, copied to `copy` when given.
    pub fn new(host: &str, copy: Option<PathBuf>) -> SerialConsole {
        SerialConsole {
            host: host.to_string(),
            text: Mutex::new(String::new()),
            copy,
            started: Mutex::new(BTreeMap::new()),
        }
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// One journal line (`short-iso`: time, host, identifier, message).
    fn line(&self, ident: &str, message: &str) {
        let now = time::OffsetDateTime::now_utc();
        let line = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00 {} {ident}: {message}\n",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            self.host
        );
        self.text.lock().unwrap_or_else(PoisonError::into_inner).push_str(&line);
        if let Some(path) = &self.copy {
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                tracing::debug!("{}: {e}", path.display());
            }
        }
    }

    /// A line the script printed.
    pub fn say(&self, script: Script, message: &str) {
        let pid = match script {
            Script::Configure => 1301,
            Script::ConfigureHelper => 1472,
        };
        self.line(&format!("{}[{pid}]", script.name()), message);
    }

    /// A line systemd printed about a unit.
    pub fn systemd(&self, message: &str) {
        self.line("systemd[1]", message);
    }

    /// The unit starts.
    pub fn unit_starting(&self, script: Script) {
        self.systemd(&format!("Starting {} - {}...", script.unit(), script.description()));
    }

    /// The unit finished (`Type=oneshot`: its script exited 0).
    pub fn unit_finished(&self, script: Script) {
        self.systemd(&format!("Finished {} - {}.", script.unit(), script.description()));
    }

    /// The unit's script exited 1 under `errexit`.
    pub fn unit_failed(&self, script: Script) {
        let unit = script.unit();
        self.systemd(&format!("{unit}: Main process exited, code=exited, status=1/FAILURE"));
        self.systemd(&format!("{unit}: Failed with result 'exit-code'."));
        self.systemd(&format!("Failed to start {unit} - {}.", script.description()));
    }

    /// `log-proto step status [reason]`, with the latency since the step's start.
    pub fn step(&self, script: Script, step: &'static str, status: StepStatus) {
        let now = time::OffsetDateTime::now_utc();
        let latency = {
            let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
            match status {
                StepStatus::Started => {
                    started.insert(step, Instant::now());
                    "null".to_string()
                }
                _ => started
                    .remove(step)
                    .map(|t| format!("\"{:.6}s\"", t.elapsed().as_secs_f64()))
                    .unwrap_or_else(|| "null".to_string()),
            }
        };
        let reason = if status == StepStatus::Error {
            "encountered non-zero exit code"
        } else {
            ""
        };
        let timestamp = now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        self.say(
            script,
            &format!(
                "{SERIALPORT_LOG} {{\"cluster_hash\":{},\"vm_instance_name\":{},\"boot_id\":{},\"timestamp\":{},\"bootstrap_status\":{{\"step_name\":{},\"status\":{},\"status_reason\":{},\"latency\":{latency}}}}}",
                quote(""),
                quote(&self.host),
                quote("sandbox"),
                quote(&timestamp),
                quote(step),
                quote(status.as_str()),
                quote(reason),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_reads_as_on_a_kube_up_master() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("serial-port-3.log");
        let c = SerialConsole::new("kubernetes-master", Some(copy.clone()));
        c.unit_starting(Script::ConfigureHelper);
        c.step(Script::ConfigureHelper, "CreateMasterEtcdAuth", StepStatus::Started);
        c.say(Script::ConfigureHelper, "gzip: stdin: not in gzip format");
        c.step(Script::ConfigureHelper, "CreateMasterEtcdAuth", StepStatus::Error);
        c.unit_failed(Script::ConfigureHelper);
        let text = c.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 7, "{text}");
        assert!(lines[0].contains(" kubernetes-master systemd[1]: Starting kube-master-configuration.service"));
        assert!(lines[2].ends_with("configure-helper.sh[1472]: gzip: stdin: not in gzip format"));
        let record = lines[3].split_once(SERIALPORT_LOG).expect("a record").1.trim();
        let v: serde_json::Value = serde_json::from_str(record).expect("JSON");
        assert_eq!(v["bootstrap_status"]["step_name"], "CreateMasterEtcdAuth");
        assert_eq!(v["bootstrap_status"]["status"], "ERROR");
        assert!(
            v["bootstrap_status"]["latency"]
                .as_str()
                .is_some_and(|l| l.ends_with('s'))
        );
        assert!(lines[6].contains("Failed to start kube-master-configuration.service - Configure kubernetes master."));
        assert_eq!(std::fs::read_to_string(copy).expect("copy"), text);
    }
}
