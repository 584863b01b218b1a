//! The local sandbox (SPEC §6): simulated master VMs that run real etcd and an HTTPS stand-in for
//! kube-apiserver, load-balancer proxies, and `kube-ha sandbox start|stop|env`.

pub mod control;
pub mod etcd_proc;
pub mod ipblock;
