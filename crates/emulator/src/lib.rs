//! The Compute Engine emulator (SPEC §6): an axum server that speaks the real Compute REST API
//! (`/compute/v1/projects/{project}/…`) well enough for the official `google-cloud-compute-v1`
//! client and for kube-ha's flows, plus control endpoints for tests.
//!
//! # Layout
//! - [`serve`] (here): bind, print the endpoint, serve until SIGTERM/SIGINT.
//! - `router`: routes and thin handlers; `control`: `/_emulator/*`.
//! - `state`: [`AppState`] and the world (projects, resources, operations, addresses) behind
//!   one mutex; `scope`: kinds, scopes, keys and resource links; `catalog`: zones and regions.
//! - `ops`: operations (PENDING → RUNNING → DONE, `requestId`, `wait`); [`latency`]: how long
//!   they take, per collection and method; `resources/*`: what each collection checks and does
//!   (`resources/metadata.rs`: metadata limits and changed keys); `faults`, `calls`: injected
//!   faults and the call log; `batch`: batch requests; `ips`: address allocation; `filter`: the
//!   list `filter` parameter; `error`: [`ApiError`].
//! - [`machines`]: the hooks to simulated VMs ([`Machines`]), [`NoMachines`] when there are none.
//!
//! # Served
//! Any project id (created empty on first use). `zones`, `regions` (list, get; a catalogue of
//! real names, unknown ones are 404); `images` (list, get, getFromFamily: a few public images of
//! `cos-cloud`, `debian-cloud`, `ubuntu-os-cloud`; read-only); `projects` get and `setCommonInstanceMetadata`;
//! `instances` (insert, get, list, aggregatedList, delete, addAccessConfig, deleteAccessConfig,
//! setMetadata, setLabels, setDiskAutoDelete, getGuestAttributes, getSerialPortOutput — values from
//! [`Machines::guest_attributes`] and [`Machines::serial_port_output`]); `disks` (insert, get, list, aggregatedList, delete); `addresses`,
//! `targetPools` (+ addInstance, removeInstance), `forwardingRules` (regional: insert, get,
//! list, aggregatedList, delete); `firewalls` (global); `operations` of each scope (get, wait).
//! Lists honour `filter` (see `filter.rs`), `maxResults` and `pageToken`.
//!
//! **Batch requests**: `POST /batch/compute/v1` with a `multipart/mixed` body of HTTP requests
//! (what gcloud sends for several resources in one command) is answered with a
//! `multipart/mixed` of their HTTP responses, in order (see `batch.rs`). Each part is logged,
//! faulted and answered as the same call made alone; the envelope itself is not logged.
//!
//! **Metadata** (`instances.setMetadata`, `projects.setCommonInstanceMetadata`) is GCE's: the
//! current `fingerprint` is required (missing or stale: 412 `conditionNotMet`), the item list
//! is replaced whole, keys match `[a-zA-Z0-9-_]+` (under 128 bytes), and a value over 256 KiB
//! or a total over 512 KiB is 413 `fieldSizeTooLarge` (also for an instance insert).
//!
//! **gcloud** works against it: `CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE=<endpoint>/compute/v1/
//! CLOUDSDK_AUTH_DISABLE_CREDENTIALS=True gcloud compute …` (the conformance suite runs every
//! command line kube-up.sh and kube-down.sh used, `tests/gcloud_conformance.rs`).
//!
//! # Operations
//! An operation's latency L is `--op-latency-ms`, or what `--op-latency` /
//! `/_emulator/latency` set for its collection or method (`instances.insert=15000`, `disks=3000`;
//! see [`latency`]). With L = 0 a mutating call is applied at once and returns its operation DONE.
//! With L > 0 it returns the operation PENDING, GETs see it RUNNING, and after L the effect is
//! applied and the operation is DONE (a resource appears or disappears only then). What GCE
//! reports synchronously (404, 409, 400, 412) is an HTTP error at once; names of pending inserts
//! already conflict; a failure found when the change is applied ends the operation DONE with
//! `error: {errors: [{code, message}]}`, `httpErrorStatusCode`, `httpErrorMessage`.
//! A repeated call with the same `requestId` returns the same operation and changes nothing.
//!
//! # Addresses
//! Each emulator owns block N, claimed with a marker socket on loopback
//! ([`crate::ipblock::IpBlock`]), so parallel emulators never share addresses. Internal IPs
//! (`networkIP`, INTERNAL addresses) come from `198.18.N.0/24`, external ones (EXTERNAL
//! addresses, ephemeral NAT and forwarding-rule IPs) from `198.19.N.0/24` (RFC 2544's
//! benchmarking range, never routed on real networks), skipping the few the sandbox uses for
//! its links; a released IP is handed out again only once every fresh one has been
//! ([`ips::AddressPlan`], `ips.rs`).
//!
//! # Control endpoints (not logged as API calls)
//! - `GET /_emulator/calls`: every `/compute/…` call in arrival order, each
//!   `{"method": "POST", "path": "/compute/v1/…", "query": "requestId=…&$alt=json",
//!   "status": 200, "mutating": true}` (`status` is null while in flight; `mutating` is true for
//!   POST/PUT/PATCH/DELETE except operations `wait`). `DELETE /_emulator/calls` clears it.
//!   A metadata write (`instances.setMetadata`, `projects.setCommonInstanceMetadata`) also has
//!   `"metadataKeysChanged": ["ssh-keys"]`: the keys its operation added, removed or gave another
//!   value, sorted, filled in when the operation is DONE without error; `[]` while it runs and
//!   for good when it was refused, faulted, repeated by `requestId` or wrote the same items. So a
//!   test can prove that a refused run wrote nothing but its own `ssh-keys` entry.
//! - `POST /_emulator/faults` with a fault (or an array of them); `GET` lists the pending ones
//!   (with remaining counts); `DELETE` clears them. A fault:
//!   ```json
//!   {"method": "POST", "path_contains": "/instances", "count": 1, "action": {...}}
//!   ```
//!   `method` (case-insensitive) and `path_contains` (a substring of the path) are optional
//!   filters, `count` defaults to 1, and `action` is one of:
//!   - `{"kind": "http_error", "code": 503, "status": "UNAVAILABLE", "message": "…"}`: the call
//!     fails at once with that Google error (`status` defaults from `code`), no effect;
//!   - `{"kind": "operation_error", "code": "QUOTA_EXCEEDED", "message": "…", "http_status": 403}`:
//!     the call is accepted (if valid) and its operation ends DONE with that error, no effect;
//!   - `{"kind": "delay", "ms": 500}`: the response is delayed — or, for a call that creates an
//!     operation, the operation's completion (the call returns at once with it PENDING);
//!   - `{"kind": "stall_operation"}`: the operation stays RUNNING forever, no effect;
//!   - `{"kind": "never_boot"}`, `{"kind": "boot_delay", "ms": 5000}`: for the next matching
//!     instance insert, passed to [`Machines::instance_created`] as its [`Boot`].
//!
//!   `http_error` and `delay` match any API call; `operation_error` and `stall_operation` only
//!   calls that create an operation, once validated; boot faults only instance inserts.
//!
//!   A **guest fault** is not queued: it is applied at once to a simulated VM's guest
//!   environment ([`Machines::guest_fault`]) and lasts until cleared:
//!   ```json
//!   {"action": {"kind": "ssh_keys_late", "ms": 5000}, "instance": "kubernetes-master"}
//!   ```
//!   with `"zone"` and `"project"` optional (looked up from the instance's name; 404 when it does
//!   not exist), or without `"instance"` and with `"project"` for every instance of the project,
//!   present and future. Kinds: `ssh_keys_late` (`ms`: the guest agent applies `ssh-keys`
//!   changes that much later), `ssh_keys_never` (it stops applying them), `host_key_changed`
//!   (the VM's SSH host keys are regenerated; guest attributes keep the old ones),
//!   `guest_clear` (back to normal). 400 when nothing is simulated (no `--sandbox-dir`).
//! - `GET /_emulator/latency`: `{"defaultMs": 0, "methods": {"instances.insert": 15000}}`.
//!   `POST` merges an update of that shape (`defaultMs` replaces the default; each `methods` key
//!   is a collection or `collection.method` set to milliseconds, `null` removes it; an unknown key
//!   is a 400 and changes nothing) and returns the result; `DELETE` restores the command line's.
//!   A new latency applies to operations accepted from then on.
//! - `GET /_emulator/state`: `{"ipBlock": N, "loadBalancers": [...], "projects": {p:
//!   {"commonInstanceMetadata", "instances": [...], "disks", "addresses", "targetPools",
//!   "forwardingRules", "firewalls", "pendingOperations": [...], "pendingNames": [...]}}}`.
//! - `GET /_emulator/hosts`: where the simulated hosts run ([`Machines::hosts`]; its shape is
//!   the sandbox's, see `kube_ha_sandbox`), what `kube-ha sandbox exec` enters; 404 without
//!   simulated machines.
//! - `POST /_emulator/instances/{zone}/{name}/crash[?project=p]`: calls [`Machines::crash`]
//!   (404 if no such instance); the instance stays RUNNING in GCE (a failed replica).
//!   Returns `{"project", "zone", "name", "crashed": bool}`.

#![warn(missing_docs)]

mod batch;
mod calls;
mod catalog;
mod control;
mod error;
mod faults;
mod filter;
pub mod ipblock;
pub mod ips;
mod json;
pub mod latency;
pub mod machines;
mod ops;
mod resources;
mod router;
mod scope;
mod state;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::ipblock::IpBlock;

pub use calls::CallRecord;
pub use error::ApiError;
pub use faults::{Fault, FaultAction};
pub use latency::MethodLatencies;
pub use machines::{Boot, GuestAttribute, GuestFault, LbRule, Machines, NoMachines};
pub use router::router;
pub use state::{AppState, DEFAULT_WAIT_LIMIT, Settings};

/// Settings of one emulator process.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Where to serve the API.
    pub listen: SocketAddr,
    /// PENDING → DONE time of each operation without an entry in `op_latencies`.
    pub op_latency: Duration,
    /// PENDING → DONE time of the operations of some collections or methods.
    pub op_latencies: MethodLatencies,
    /// Boot time of a simulated VM.
    pub boot_delay: Duration,
    /// Block N to claim (default: a free one); addresses follow [`ips::AddressPlan`].
    pub ip_block: Option<u8>,
}

/// Claim the address block, bind, print `listening on http://ADDR` then `ip block 127.N.0.0/16`
/// (the loopback block whose marker proves ownership of N, see [`ipblock`])
/// on stdout (flushed), serve until SIGTERM or SIGINT, then call [`Machines::shutdown`].
pub async fn serve(opts: EmulatorOptions, machines: Arc<dyn Machines>) -> anyhow::Result<()> {
    serve_with(opts, move |_| Ok(machines)).await
}

/// [`serve`], with the machines built once the address block is claimed and before the API
/// listens: the sandbox builds its network from the block's [`ips::AddressPlan`], and an error
/// there (e.g. no privilege for network namespaces) stops the emulator before it serves.
pub async fn serve_with(
    opts: EmulatorOptions,
    machines: impl FnOnce(ips::AddressPlan) -> anyhow::Result<Arc<dyn Machines>>,
) -> anyhow::Result<()> {
    let block = match opts.ip_block {
        Some(n) => IpBlock::claim(n)?,
        None => IpBlock::claim_free()?,
    };
    let machines = machines(ips::AddressPlan::new(block.n()))?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr().context("listener has no address")?;
    let base_url = format!("http://{addr}");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {base_url}")?;
        writeln!(out, "ip block 127.{}.0.0/16", block.n())?;
        out.flush()?;
    }
    let mut settings = Settings::new(base_url, block.n());
    settings.op_latency = opts.op_latency;
    settings.op_latencies = opts.op_latencies;
    settings.boot_delay = opts.boot_delay;
    let state = AppState::new(settings, machines.clone());
    let app = router(state.clone());
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop_signal().await;
            // wake blocked operation waits so connections can close
            state.begin_shutdown();
        })
        .await;
    machines.shutdown();
    drop(block);
    result.context("emulator server failed")
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod hooks_tests;
