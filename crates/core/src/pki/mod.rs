//! Certificates (SPEC §3): the three cluster CAs, each replica's own leaf certificates, the
//! short-lived client certificate kube-ha issues itself for etcd, and the admin kubeconfig
//! certificate. Pure functions of their inputs plus fresh keys; nothing here does I/O.

mod certs;
pub mod kube_env;

pub use certs::*;
