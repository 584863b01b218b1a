//! Why a master's boot stopped, from its boot log: serial port 3, where a kube-up master's
//! `kube-bootstrap-logs-forwarder` copies the journal of `configure.sh` and `configure-helper.sh`
//! (`names::BOOT_LOG_SERIAL_PORT`). configure-helper records every step (`log-proto`: `STARTED`,
//! `COMPLETED`, and `ERROR` from the `EXIT` trap of the step the script died in), so the failure
//! is the last `ERROR` record not followed by a completed boot, and its reason the last line the
//! same script printed before it (what bash or the failing command said). The parser is pure;
//! [`observe`] reads the log of each replica whose etcd does not answer, for `status`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::gce::Gce;
use crate::names::{BOOT_LOG_SERIAL_PORT, BOOT_STEP_RECORD, EtcdCluster};
use crate::plan::Snapshot;

/// The step whose completion means the boot went through.
const MAIN_STEP: &str = "ConfigureHelperMain";

/// Where and why a boot stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BootFailure {
    /// The script (`configure-helper.sh`, `configure.sh`).
    pub script: String,
    /// Its step (`CreateMasterEtcdAuth`, …).
    pub step: String,
    /// What the script printed last before it died.
    pub reason: String,
}

impl std::fmt::Display for BootFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "its boot stopped in {} step {}: {}",
            self.script, self.step, self.reason
        )
    }
}

/// One journal line (`short-iso`): `<time> <host> <ident>[<pid>]: <message>`.
fn split(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.splitn(3, ' ');
    let (_time, _host, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (ident, message) = rest.split_once(": ")?;
    Some((ident.split('[').next().unwrap_or(ident), message))
}

/// A step record's step name and status.
fn record(message: &str) -> Option<(String, String)> {
    let json = message.strip_prefix(BOOT_STEP_RECORD)?.trim();
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let s = v.get("bootstrap_status")?;
    Some((
        s.get("step_name")?.as_str()?.to_string(),
        s.get("status")?.as_str()?.to_string(),
    ))
}

/// The failure in a boot log, if its last boot failed (see the module doc).
pub fn failure(log: &str) -> Option<BootFailure> {
    let lines: Vec<(&str, &str)> = log.lines().filter_map(split).collect();
    let mut failed: Option<(usize, String)> = None;
    for (i, (_, message)) in lines.iter().enumerate() {
        match record(message) {
            Some((step, status)) if status == "ERROR" => failed = Some((i, step)),
            Some((step, status)) if step == MAIN_STEP && status == "COMPLETED" => failed = None,
            _ => {}
        }
    }
    let (at, step) = failed?;
    let script = lines[at].0;
    let reason = lines[..at]
        .iter()
        .rev()
        .find(|(ident, message)| *ident == script && record(message).is_none())
        .map(|(_, message)| message.to_string())
        .unwrap_or_else(|| "encountered non-zero exit code".to_string());
    Some(BootFailure {
        script: script.to_string(),
        step,
        reason,
    })
}

/// The boot failures of running replicas whose main etcd member is missing or unhealthy, by
/// replica name (one `getSerialPortOutput` per such replica; a log that cannot be read is
/// skipped: status reports the member's health either way).
pub async fn observe(gce: &Gce, s: &Snapshot) -> BTreeMap<String, BootFailure> {
    let main = s.etcd.get(&EtcdCluster::Main);
    let suspects = s.replicas.iter().filter(|r| r.status == "RUNNING").filter(|r| {
        let healthy = s
            .member_of(EtcdCluster::Main, &r.name)
            .is_some_and(|m| main.is_some_and(|o| o.is_healthy(m.id)));
        !healthy
    });
    let mut out = BTreeMap::new();
    for r in suspects {
        match gce
            .serial_port_output(&r.zone, &r.name, i32::from(BOOT_LOG_SERIAL_PORT))
            .await
        {
            Ok(Some(log)) => {
                if let Some(f) = failure(&log) {
                    out.insert(r.name.clone(), f);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("boot log of {}: {e}", r.name),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ident: &str, step: &str, status: &str) -> String {
        format!(
            "2026-12-01T10:00:00+00:00 m {ident}: {BOOT_STEP_RECORD} {{\"cluster_hash\":\"\",\"vm_instance_name\":\"m\",\"boot_id\":\"b\",\"timestamp\":\"t\",\"bootstrap_status\":{{\"step_name\":\"{step}\",\"status\":\"{status}\",\"status_reason\":\"\",\"latency\":null}}}}\n"
        )
    }

    fn say(ident: &str, text: &str) -> String {
        format!("2026-12-01T10:00:00+00:00 m {ident}: {text}\n")
    }

    #[test]
    fn the_failure_is_the_last_error_step_with_what_its_script_printed_before() {
        let h = "configure-helper.sh[1472]";
        let log = [
            say(
                "systemd[1]",
                "Starting kube-master-configuration.service - Configure kubernetes master...",
            ),
            rec(h, MAIN_STEP, "STARTED"),
            rec(h, "CreateMasterEtcdAuth", "STARTED"),
            say(h, "gzip: stdin: not in gzip format"),
            say("kubelet[9]", "something else"),
            rec(h, "CreateMasterEtcdAuth", "ERROR"),
            say(
                "systemd[1]",
                "kube-master-configuration.service: Failed with result 'exit-code'.",
            ),
        ]
        .concat();
        assert_eq!(
            failure(&log),
            Some(BootFailure {
                script: "configure-helper.sh".into(),
                step: "CreateMasterEtcdAuth".into(),
                reason: "gzip: stdin: not in gzip format".into(),
            })
        );
        assert_eq!(
            failure(&log).map(|f| f.to_string()).as_deref(),
            Some("its boot stopped in configure-helper.sh step CreateMasterEtcdAuth: gzip: stdin: not in gzip format")
        );
    }

    #[test]
    fn a_boot_that_completed_after_a_failure_or_never_failed_is_none() {
        let h = "configure-helper.sh[1]";
        let failed_then_ok = [
            rec(h, "CreateMasterPKI", "ERROR"),
            rec(h, MAIN_STEP, "STARTED"),
            rec(h, MAIN_STEP, "COMPLETED"),
        ]
        .concat();
        assert_eq!(failure(&failed_then_ok), None);
        assert_eq!(failure(""), None);
        assert_eq!(failure("garbage\nmore garbage\n"), None);
        let silent = rec("configure.sh[2]", "DownloadKubeEnv", "ERROR");
        assert_eq!(
            failure(&silent).map(|f| (f.script, f.reason)),
            Some(("configure.sh".into(), "encountered non-zero exit code".into()))
        );
    }
}
