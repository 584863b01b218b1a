//! Placeholder until the etcd client lands (interface only).
#![allow(missing_docs, clippy::unused_async)]

use std::time::Duration;

use super::{EndpointStatus, EtcdError, Member, MemberId};

#[derive(Clone, Debug)]
pub struct EtcdClient;

impl EtcdClient {
    pub fn new(_ca: &str, _cert: &str, _key: &str, _timeout: Duration) -> anyhow::Result<Self> {
        anyhow::bail!("etcd client not implemented yet")
    }
    pub async fn member_list(&self, _e: &str) -> Result<Vec<Member>, EtcdError> {
        unimplemented!()
    }
    pub async fn member_add(&self, _e: &str, _peers: &[String], _learner: bool) -> Result<Member, EtcdError> {
        unimplemented!()
    }
    pub async fn member_promote(&self, _e: &str, _id: MemberId) -> Result<(), EtcdError> {
        unimplemented!()
    }
    pub async fn member_remove(&self, _e: &str, _id: MemberId) -> Result<(), EtcdError> {
        unimplemented!()
    }
    pub async fn status(&self, _e: &str) -> Result<EndpointStatus, EtcdError> {
        unimplemented!()
    }
    pub async fn move_leader(&self, _e: &str, _id: MemberId) -> Result<(), EtcdError> {
        unimplemented!()
    }
}
