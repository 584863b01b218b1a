//! Injected faults (`/_emulator/faults`): a queue of rules, each consumed by the next `count`
//! API calls it matches. The format is documented in the module doc of [`crate`].
//!
//! Which calls a fault can match depends on its action: `http_error` and `delay` match any
//! `/compute/v1` call; `operation_error` and `stall_operation` only calls that create an
//! operation (and only once the call passed validation); `never_boot` and `boot_delay` only
//! instance inserts. A call that does not fit an action leaves the fault in the queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{ApiError, default_status_for};
use super::machines::{Boot, GuestFault};

/// One fault rule, as posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// HTTP method to match (any when absent), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Substring of the request path to match (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// How many matching calls it affects (remaining, when listed).
    #[serde(default = "one")]
    pub count: u32,
    /// What happens to them.
    pub action: FaultAction,
}

fn one() -> u32 {
    1
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// The call fails synchronously with this HTTP error; nothing changes.
    HttpError {
        /// HTTP status (400..=599).
        code: u16,
        /// Google status string; derived from `code` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        /// Error message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The call is accepted, its operation ends DONE with this error; nothing changes.
    OperationError {
        /// `error.errors[0].code`, e.g. `QUOTA_EXCEEDED`.
        code: String,
        /// `error.errors[0].message`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// `httpErrorStatusCode` (default 400).
        #[serde(default = "bad_request")]
        http_status: u16,
    },
    /// The response (or, for a call that creates an operation, the operation's completion) is
    /// delayed by `ms`.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// The call's operation stays RUNNING forever (its effect never happens).
    StallOperation,
    /// The next matching instance insert's VM never boots.
    NeverBoot,
    /// The next matching instance insert's VM boots after `ms`.
    BootDelay {
        /// Milliseconds.
        ms: u64,
    },
}

fn bad_request() -> u16 {
    400
}

/// A fault of a simulated VM's guest environment, as posted: applied at once through
/// [`crate::Machines::guest_fault`], not queued for API calls. `instance` absent: every instance
/// of `project`, present and future (then `project` is required); `zone` and `project` may be
/// left out for an instance whose name is unique.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestFaultRequest {
    /// The project (looked up from `instance` when absent).
    #[serde(default)]
    pub project: Option<String>,
    /// The instance's zone (looked up from `instance` when absent).
    #[serde(default)]
    pub zone: Option<String>,
    /// The instance; absent: the whole project.
    #[serde(default)]
    pub instance: Option<String>,
    /// What goes wrong.
    pub action: GuestAction,
}

/// The `action` of a [`GuestFaultRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum GuestAction {
    /// [`GuestFault::SshKeysLate`].
    SshKeysLate {
        /// The extra delay, milliseconds.
        ms: u64,
    },
    /// [`GuestFault::SshKeysNever`].
    SshKeysNever,
    /// [`GuestFault::HostKeyChanged`].
    HostKeyChanged,
    /// [`GuestFault::Clear`].
    GuestClear,
}

impl GuestAction {
    /// The `kind`s that name a guest fault (every other `kind` is an API fault).
    pub const KINDS: [&'static str; 4] = ["ssh_keys_late", "ssh_keys_never", "host_key_changed", "guest_clear"];

    /// The fault the machines are given.
    pub fn fault(self) -> GuestFault {
        match self {
            GuestAction::SshKeysLate { ms } => GuestFault::SshKeysLate {
                delay: Duration::from_millis(ms),
            },
            GuestAction::SshKeysNever => GuestFault::SshKeysNever,
            GuestAction::HostKeyChanged => GuestFault::HostKeyChanged,
            GuestAction::GuestClear => GuestFault::Clear,
        }
    }
}

/// One posted fault object: an API fault for the queue, or a guest fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Queued for the API calls it matches.
    Api(Fault),
    /// Applied to the simulated VMs at once.
    Guest(GuestFaultRequest),
}

impl Posted {
    /// Parse one posted object; its `action.kind` decides which kind it is.
    pub fn parse(value: serde_json::Value) -> Result<Posted, ApiError> {
        let guest = value
            .pointer("/action/kind")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|kind| GuestAction::KINDS.contains(&kind));
        let parsed = if guest {
            serde_json::from_value(value).map(Posted::Guest)
        } else {
            serde_json::from_value(value).map(Posted::Api)
        };
        let posted = parsed.map_err(|e| ApiError::BadRequest(format!("invalid fault: {e}")))?;
        match &posted {
            Posted::Api(f) => f.validate()?,
            Posted::Guest(g) if g.instance.is_none() && g.project.is_none() => {
                return Err(ApiError::BadRequest(
                    "a guest fault without \"instance\" applies to a whole project: give \"project\"".into(),
                ));
            }
            Posted::Guest(_) => {}
        }
        Ok(posted)
    }
}

/// How an operation whose call matched a fault ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// Normally (the effect is applied).
    Apply,
    /// DONE with this error, no effect.
    Fail(OpFailure),
    /// Never: RUNNING forever.
    Stall,
}

/// The error of an operation failed by a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpFailure {
    /// `error.errors[0].code`.
    pub code: String,
    /// `error.errors[0].message`.
    pub message: String,
    /// `httpErrorStatusCode`.
    pub http_status: u16,
}

/// The faults one operation-creating call consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpFaults {
    /// Extra time before the operation completes.
    pub delay: Duration,
    /// How it ends.
    pub outcome: OpOutcome,
    /// The boot mode, when an instance insert matched a boot fault.
    pub boot: Option<Boot>,
}

impl Fault {
    /// Reject rules that could never make sense.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.count == 0 {
            return Err(ApiError::BadRequest("fault count must be at least 1".into()));
        }
        if let FaultAction::HttpError { code, .. } = self.action
            && !(400..=599).contains(&code)
        {
            return Err(ApiError::BadRequest(format!(
                "http_error code must be 400..=599, got {code}"
            )));
        }
        if let FaultAction::OperationError { http_status, .. } = self.action
            && !(400..=599).contains(&http_status)
        {
            return Err(ApiError::BadRequest(format!(
                "operation_error http_status must be 400..=599, got {http_status}"
            )));
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path_contains.as_deref().is_none_or(|p| path.contains(p))
    }
}

/// The pending faults, in the order they were posted.
#[derive(Debug, Default)]
pub struct FaultQueue {
    faults: Vec<Fault>,
}

impl FaultQueue {
    /// Add a rule.
    pub fn push(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// The pending rules.
    pub fn list(&self) -> &[Fault] {
        &self.faults
    }

    /// Remove every rule.
    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// Consume one use of the first rule that matches the call and whose action `fits`.
    fn take(&mut self, method: &str, path: &str, fits: impl Fn(&FaultAction) -> bool) -> Option<FaultAction> {
        let i = self
            .faults
            .iter()
            .position(|f| f.matches(method, path) && fits(&f.action))?;
        let fault = &mut self.faults[i];
        let action = fault.action.clone();
        fault.count -= 1;
        if fault.count == 0 {
            self.faults.remove(i);
        }
        Some(action)
    }

    /// An `http_error` for this call, as the error to return.
    pub fn take_http_error(&mut self, method: &str, path: &str) -> Option<ApiError> {
        match self.take(method, path, |a| matches!(a, FaultAction::HttpError { .. }))? {
            FaultAction::HttpError { code, status, message } => Some(ApiError::Injected {
                code,
                status: status.unwrap_or_else(|| default_status_for(code).into()),
                message: message.unwrap_or_else(|| format!("injected fault: HTTP {code}")),
            }),
            _ => None,
        }
    }

    /// A `delay` of this call's response.
    pub fn take_delay(&mut self, method: &str, path: &str) -> Option<Duration> {
        match self.take(method, path, |a| matches!(a, FaultAction::Delay { .. }))? {
            FaultAction::Delay { ms } => Some(Duration::from_millis(ms)),
            _ => None,
        }
    }

    /// The faults of a call that creates an operation (`instance_insert`: it may take a boot fault).
    pub fn take_for_operation(&mut self, method: &str, path: &str, instance_insert: bool) -> OpFaults {
        let delay = self.take_delay(method, path).unwrap_or_default();
        let outcome = match self.take(method, path, |a| {
            matches!(a, FaultAction::OperationError { .. } | FaultAction::StallOperation)
        }) {
            Some(FaultAction::OperationError {
                code,
                message,
                http_status,
            }) => OpOutcome::Fail(OpFailure {
                message: message.unwrap_or_else(|| format!("injected fault: {code}")),
                code,
                http_status,
            }),
            Some(FaultAction::StallOperation) => OpOutcome::Stall,
            _ => OpOutcome::Apply,
        };
        let boot = if instance_insert {
            match self.take(method, path, |a| {
                matches!(a, FaultAction::NeverBoot | FaultAction::BootDelay { .. })
            }) {
                Some(FaultAction::NeverBoot) => Some(Boot::Never),
                Some(FaultAction::BootDelay { ms }) => Some(Boot::Normal {
                    delay: Duration::from_millis(ms),
                }),
                _ => None,
            }
        } else {
            None
        };
        OpFaults { delay, outcome, boot }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fault(v: serde_json::Value) -> Fault {
        let f: Fault = serde_json::from_value(v).expect("valid fault");
        f.validate().expect("sensible");
        f
    }

    #[test]
    fn an_http_error_is_consumed_by_count_matching_calls() {
        let mut q = FaultQueue::default();
        q.push(fault(
            json!({"method": "post", "path_contains": "/instances", "count": 2,
            "action": {"kind": "http_error", "code": 503}}),
        ));
        assert!(
            q.take_http_error("GET", "/compute/v1/projects/p/zones/z/instances")
                .is_none()
        );
        assert!(
            q.take_http_error("POST", "/compute/v1/projects/p/zones/z/disks")
                .is_none()
        );
        let e = q
            .take_http_error("POST", "/compute/v1/projects/p/zones/z/instances")
            .expect("first");
        assert_eq!((e.http_status(), e.status()), (503, "UNAVAILABLE".to_string()));
        assert_eq!(q.list()[0].count, 1);
        assert!(q.take_http_error("POST", "/x/instances").is_some());
        assert!(q.list().is_empty());
    }

    #[test]
    fn operation_faults_only_fit_their_calls() {
        let mut q = FaultQueue::default();
        q.push(fault(json!({"action": {"kind": "never_boot"}})));
        q.push(fault(
            json!({"action": {"kind": "operation_error", "code": "QUOTA_EXCEEDED", "http_status": 403}}),
        ));
        q.push(fault(json!({"action": {"kind": "delay", "ms": 5}})));
        // a disk insert takes the delay and the operation error, not the boot fault
        let f = q.take_for_operation("POST", "/p/zones/z/disks", false);
        assert_eq!(f.delay, Duration::from_millis(5));
        assert!(
            matches!(f.outcome, OpOutcome::Fail(OpFailure { ref code, http_status: 403, .. }) if code == "QUOTA_EXCEEDED")
        );
        assert_eq!(f.boot, None);
        let f = q.take_for_operation("POST", "/p/zones/z/instances", true);
        assert_eq!(f.boot, Some(Boot::Never));
        assert_eq!(f.outcome, OpOutcome::Apply);
        assert!(q.list().is_empty());
    }

    #[test]
    fn guest_faults_are_told_apart_by_their_kind() {
        let late = Posted::parse(json!({"action": {"kind": "ssh_keys_late", "ms": 5000}, "instance": "m"}))
            .expect("guest fault");
        let Posted::Guest(late) = late else {
            panic!("not a guest fault")
        };
        assert_eq!(late.instance.as_deref(), Some("m"));
        assert_eq!(
            late.action.fault(),
            GuestFault::SshKeysLate {
                delay: Duration::from_millis(5000)
            }
        );
        let project_wide = Posted::parse(json!({"action": {"kind": "host_key_changed"}, "project": "p"}));
        assert!(matches!(project_wide, Ok(Posted::Guest(_))));
        assert!(
            Posted::parse(json!({"action": {"kind": "ssh_keys_never"}})).is_err(),
            "no target"
        );
        assert!(Posted::parse(json!({"action": {"kind": "guest_clear"}, "instance": "m", "count": 2})).is_err());
        assert!(matches!(
            Posted::parse(json!({"action": {"kind": "never_boot"}})),
            Ok(Posted::Api(_))
        ));
        assert!(Posted::parse(json!({"action": {"kind": "http_error", "code": 200}})).is_err());
    }

    #[test]
    fn malformed_faults_are_refused() {
        assert!(serde_json::from_value::<Fault>(json!({"action": {"kind": "explode"}})).is_err());
        assert!(serde_json::from_value::<Fault>(json!({"path": "/x", "action": {"kind": "never_boot"}})).is_err());
        let f: Fault = serde_json::from_value(json!({"action": {"kind": "http_error", "code": 200}})).expect("parses");
        assert!(f.validate().is_err());
    }
}
