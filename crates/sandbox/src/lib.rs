//! The local sandbox (SPEC §6): the emulator's instances as VMs that are hosts of their own —
//! own network, mount, UTS and PID namespaces on a private VPC, a GCE metadata server, a guest
//! agent, OpenSSH's sshd, enforced firewall rules — running real etcd and an HTTPS stand-in for
//! kube-apiserver; load-balancer proxies; and `kube-ha sandbox start|stop|env|exec`.
//!
//! - [`SandboxMachines`] (`machines.rs`): the emulator's hooks, an actor that owns every VM and
//!   the router's wanted state; `vm.rs`: one VM's life; `host.rs`: a VM's namespaces and files
//!   (`files.rs`); `vpc.rs`: the sandbox's network (router, links, NAT); `firewall.rs`: GCE
//!   firewall rules as nftables chains; `metadata.rs`: the metadata server; `guest_agent.rs`:
//!   SSH keys and host keys; `sshd.rs`: sshd per connection; `boot.rs`: what configure-helper
//!   starts; `apiserver.rs`: the API stand-in; `proxy.rs`: a forwarding rule as a TCP proxy;
//!   `listener.rs`: the listener task both use; `registry.rs`: what the synchronous hooks read;
//!   `layout.rs`: where files go.
//! - [`ns`]: processes and namespaces (the spawner thread, holders, entering a VM).
//! - [`etcd_proc`]: one etcd member process with configure-helper's flags.
//! - [`control`]: the emulator as a background service under a state dir, and `sandbox exec`.
//!
//! Root is required (namespaces, links, nftables); as another user the sandbox refuses with one
//! `error:` line.

#![warn(missing_docs)]

mod apiserver;
mod boot;
mod configure_helper;
mod console;
pub mod control;
pub mod etcd_proc;
mod files;
mod firewall;
mod guest_agent;
mod host;
pub mod layout;
mod listener;
mod machines;
mod metadata;
pub mod ns;
mod proxy;
mod registry;
mod sshd;
mod vm;
mod vpc;

pub use apiserver::VERSION as APISERVER_VERSION;
pub use machines::SandboxMachines;
pub use vpc::machine_link;
