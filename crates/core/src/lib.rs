//! kube-ha's product library: highly-available Kubernetes masters on Google Compute Engine, driven
//! by kube-up's environment variables. `up` and `down` observe the world, plan, then act; a rerun of
//! the same command finishes or undoes whatever an interrupted run left (SPEC §4).
//!
//! Layout: [`config`] (the env contract) and [`names`] (every name and port) are pure; [`plan`]
//! turns a snapshot into steps; [`ops`] is the only code that reaches GCE ([`gce`]) and etcd
//! ([`etcd`], over SSH to the masters: [`ssh`]); [`pki`] makes certificates and the kube-env maps;
//! [`bootstrap`] builds what a first master needs to boot on GCE. The emulator and the sandbox that
//! tests and the quick
//! start run against are crates of their own; nothing here depends on them.

#![warn(missing_docs)]

pub mod bootstrap;
pub mod config;
pub mod error;
pub mod etcd;
pub mod gce;
pub mod names;
pub mod ops;
pub mod pki;
pub mod plan;
pub mod ssh;
