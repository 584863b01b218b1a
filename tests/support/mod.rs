//! Shared helpers of the end-to-end tests: real processes (the emulator, etcd), never mocks.
#![allow(dead_code)]
pub mod cluster;
pub mod emulator;
pub mod etcd;
pub mod sandbox;
