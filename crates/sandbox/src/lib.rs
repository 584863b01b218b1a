//! The local sandbox (SPEC §6): simulated master VMs that run real etcd and an HTTPS stand-in for
//! kube-apiserver, load-balancer proxies, and `kube-ha sandbox start|stop|env`.
//!
//! - [`SandboxMachines`] (`machines.rs`): the emulator's hooks, an actor that owns every VM and
//!   proxy; `vm.rs`: one VM's boot and life; `apiserver.rs`: the HTTPS stand-in; `proxy.rs`: a
//!   forwarding rule as a TCP proxy; `listener.rs`: the listener task both use; `layout.rs`:
//!   where files go.
//! - [`etcd_proc`]: one etcd member process with configure-helper's flags.
//! - [`control`]: the emulator as a background service under a state dir.

#![warn(missing_docs)]

mod apiserver;
pub mod control;
pub mod etcd_proc;
pub mod layout;
mod listener;
mod machines;
mod proxy;
mod vm;

pub use machines::SandboxMachines;
