//! `EtcdClient` against real etcd 3.4 members started by `sandbox::etcd_proc`, with certificates
//! from `pki`: membership changes the way kube-ha makes them (learner, start, promote), leadership
//! transfer, removal, every refusal callers branch on, mutual TLS refusals, and deadlines.
//!
//! Timings are printed (run with `--nocapture`) because they are the numbers the flows' waits
//! are sized from.

use kube_ha_testkit as support;

use std::time::{Duration, Instant};

use kube_ha_core::etcd::{EtcdError, MemberId};
use kube_ha_core::names::EtcdCluster;
use kube_ha_core::pki::{ClusterCas, issue_tool_client};
use kube_ha_sandbox::etcd_proc::InitialClusterState::Existing;
use support::etcd::{TestEtcd, TestMember, retry_while_unhealthy};
use time::OffsetDateTime;

/// Poll `status` on `endpoint` until it names `want` as leader.
async fn wait_leader(t: &TestEtcd, endpoint: &str, want: MemberId, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let status = t.client.status(endpoint).await.expect("status");
        if status.leader == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "leader is {:?}, want {want}", status.leader);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_main_cluster_grows_by_learners_moves_its_leader_and_shrinks() {
    let t = TestEtcd::new(EtcdCluster::Main);
    let c = &t.client;
    let clock = Instant::now();
    let m1 = t.start_new(1).await;
    eprintln!("main: single member healthy after {:?}", clock.elapsed());
    let ep1 = m1.endpoint();
    assert!(ep1.ends_with(":2379") && m1.peer_url().ends_with(":2380"));

    // A started voting member: every field present.
    let members = t.members(&ep1).await;
    assert_eq!(members.len(), 1);
    let id1 = members[0].id;
    assert_eq!(members[0].name, "etcd-kubernetes-master");
    assert_eq!(members[0].peer_urls, [m1.peer_url()]);
    assert_eq!(members[0].client_urls, std::slice::from_ref(&ep1));
    assert!(!members[0].is_learner && members[0].is_started());
    let status = c.status(&ep1).await.expect("status");
    assert_eq!((status.member_id, status.leader), (id1, Some(id1)));
    assert!(!status.is_learner && status.errors.is_empty() && status.raft_term >= 2);

    // KV round trip, including bytes that are not UTF-8 and an empty value (omitted in JSON).
    c.put(&ep1, b"/registry/answer", b"42").await.expect("put");
    assert_eq!(
        c.get(&ep1, b"/registry/answer").await.expect("get"),
        Some(b"42".to_vec())
    );
    assert_eq!(c.get(&ep1, b"/registry/none").await.expect("get"), None);
    c.put(&ep1, &[0, 0xff, b'\n'], b"").await.expect("put binary key");
    assert_eq!(c.get(&ep1, &[0, 0xff, b'\n']).await.expect("get"), Some(vec![]));

    // Add member 2 as a learner: recorded without name or client URLs until it starts.
    let added2 = c.member_add(&ep1, &[t.peer_url(2)], true).await.expect("add learner");
    assert!(added2.is_learner && !added2.is_started() && added2.client_urls.is_empty());
    assert_eq!(added2.peer_urls, [t.peer_url(2)]);
    let members = t.members(&ep1).await;
    assert_eq!(members.len(), 2);
    assert_eq!(members[1], added2);

    // While it is in flight: a second learner and a reused peer URL are refused.
    let err = c
        .member_add(&ep1, &[t.peer_url(3)], true)
        .await
        .expect_err("2nd learner");
    assert!(matches!(err, EtcdError::TooManyLearners), "{err:?}");
    let err = c.member_add(&ep1, &[m1.peer_url()], false).await.expect_err("dup URL");
    assert!(matches!(err, EtcdError::PeerUrlExists), "{err:?}");

    // Start it with `existing`; a learner serves serializable reads only.
    let clock = Instant::now();
    let m2 = t.spawn(2, &[1, 2], Existing);
    t.wait_healthy(&m2).await;
    let learner_healthy = clock.elapsed();
    let ep2 = m2.endpoint();
    let status2 = c.status(&ep2).await.expect("learner status");
    assert!(status2.is_learner);
    assert_eq!((status2.member_id, status2.leader), (added2.id, Some(id1)));
    let err = c
        .get(&ep2, b"/registry/answer")
        .await
        .expect_err("linearizable on learner");
    assert!(matches!(err, EtcdError::NotSupportedForLearner), "{err:?}");
    // Serializable: the learner's own copy, which may trail the leader for a moment.
    let clock_read = Instant::now();
    while c
        .get_serializable(&ep2, b"/registry/answer")
        .await
        .expect("serializable")
        != Some(b"42".to_vec())
    {
        assert!(clock_read.elapsed() < Duration::from_secs(5), "learner never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let attempts = t.promote(&ep1, added2.id, Duration::from_secs(10)).await;
    eprintln!(
        "main: learner healthy {learner_healthy:?} after its start; promoted {:?} after its start ({attempts} attempt(s))",
        clock.elapsed()
    );
    let members = t.members(&ep1).await;
    assert!(members.iter().all(|m| !m.is_learner && m.is_started()));
    assert_eq!(members[1].name, "etcd-kubernetes-master-x02");
    assert_eq!(members[1].client_urls, std::slice::from_ref(&ep2));

    // Promoting a voting member is a different refusal from "not in sync yet": don't retry it.
    let err = c.member_promote(&ep1, id1).await.expect_err("promote voter");
    assert!(matches!(err, EtcdError::NotALearner), "{err:?}");

    // A third member the same way. etcd refuses any add until the member answering has been
    // connected to every voter for 5 s, so right after a promote this is "unhealthy cluster".
    let peer3 = [t.peer_url(3)];
    let (added3, waited) = retry_while_unhealthy(Duration::from_secs(10), || c.member_add(&ep2, &peer3, true)).await;
    let added3 = added3.expect("add 3rd");
    eprintln!("main: add after a promote was refused as unhealthy for {waited:?}");
    let clock = Instant::now();
    let m3 = t.spawn(3, &[1, 2, 3], Existing);
    let attempts = t.promote(&ep1, added3.id, Duration::from_secs(10)).await;
    eprintln!(
        "main: 3rd member promoted {:?} after its start ({attempts} attempt(s))",
        clock.elapsed()
    );
    let members = t.members(&ep1).await;
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| !m.is_learner));
    t.wait_healthy(&m3).await;

    // Every member names the same leader, and the leader says it is itself.
    let nodes: [&TestMember; 3] = [&m1, &m2, &m3];
    let mut leaders = Vec::new();
    for n in nodes {
        leaders.push(c.status(&n.endpoint()).await.expect("status").leader);
    }
    let leader = leaders[0].expect("a leader");
    assert!(leaders.iter().all(|l| *l == Some(leader)), "{leaders:?}");
    let ids = [id1, added2.id, added3.id];
    let leader_at = ids.iter().position(|id| *id == leader).expect("leader is a member");
    let leader_ep = nodes[leader_at].endpoint();
    let target_at = (leader_at + 1) % 3;
    let target = ids[target_at];
    let bystander_at = (leader_at + 2) % 3;

    // Leadership moves only through the leader, and only to a member.
    let err = c
        .move_leader(&nodes[bystander_at].endpoint(), target)
        .await
        .expect_err("sent to a follower");
    assert!(matches!(err, EtcdError::NotLeader), "{err:?}");
    let err = c.move_leader(&leader_ep, MemberId(0x1234)).await.expect_err("unknown");
    assert!(matches!(err, EtcdError::BadLeaderTransferee), "{err:?}");
    let clock = Instant::now();
    c.move_leader(&leader_ep, target).await.expect("move leader");
    let moved = clock.elapsed();
    wait_leader(&t, &nodes[target_at].endpoint(), target, Duration::from_secs(3)).await;
    wait_leader(&t, &nodes[bystander_at].endpoint(), target, Duration::from_secs(3)).await;
    eprintln!("main: transfer-leadership returned after {moved:?}");

    // Remove a follower through the new leader: it leaves the list and its process exits.
    let victim = &nodes[bystander_at];
    let victim_id = ids[bystander_at];
    let new_leader_ep = nodes[target_at].endpoint();
    let (remaining, waited) =
        retry_while_unhealthy(Duration::from_secs(10), || c.member_remove(&new_leader_ep, victim_id)).await;
    let remaining = remaining.expect("remove follower");
    let clock = Instant::now();
    eprintln!("main: remove was refused as unhealthy for {waited:?} (5 s rule after the 3rd joined)");
    assert_eq!(remaining.len(), 2);
    assert!(remaining.iter().all(|m| m.id != victim_id));
    let exit = victim.process.wait_exit_async(Duration::from_secs(10)).await;
    assert!(exit.is_some(), "removed member still running; log:\n{}", t.log(victim));
    eprintln!("main: removed member exited {:?} after the remove", clock.elapsed());

    // Removing it again: it is no longer a member.
    let err = c
        .member_remove(&nodes[target_at].endpoint(), victim_id)
        .await
        .expect_err("remove twice");
    assert!(matches!(err, EtcdError::MemberNotFound), "{err:?}");
    // The data survived every change.
    assert_eq!(
        c.get(&nodes[target_at].endpoint(), b"/registry/answer")
            .await
            .expect("get"),
        Some(b"42".to_vec())
    );
}

#[tokio::test]
async fn an_events_cluster_without_quorum_refuses_adds_and_times_out_removes() {
    let t = TestEtcd::new(EtcdCluster::Events);
    let c = &t.client;
    let m1 = t.start_new(1).await;
    let ep1 = m1.endpoint();
    assert!(ep1.ends_with(":4002") && m1.peer_url().ends_with(":2381"));
    c.put(&ep1, b"/events/e1", b"x").await.expect("put");

    let added = c.member_add(&ep1, &[t.peer_url(2)], true).await.expect("add learner");
    let clock = Instant::now();
    let m2 = t.spawn(2, &[1, 2], Existing);
    let attempts = t.promote(&ep1, added.id, Duration::from_secs(10)).await;
    eprintln!(
        "events: learner promoted {:?} after its start ({attempts} attempt(s))",
        clock.elapsed()
    );
    // A member serves clients only after it has published its name and client URLs.
    t.wait_healthy(&m2).await;
    let members = t.members(&ep1).await;
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| !m.is_learner));
    assert_eq!(members[1].peer_urls, [t.peer_url(2)]);
    assert_eq!(members[1].client_urls, [m2.endpoint()]);

    // Two voting members, one dies: no quorum.
    m2.process.kill().expect("kill member 2");
    let clock = Instant::now();
    loop {
        match c.health(&ep1).await {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => panic!("health: {e}"),
        }
        assert!(clock.elapsed() < Duration::from_secs(10), "still healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("events: /health false {:?} after the peer died", clock.elapsed());

    // The member list is served locally and still answers.
    assert_eq!(t.members(&ep1).await.len(), 2);
    // Adds are refused at once.
    let err = c
        .member_add(&ep1, &[t.peer_url(3)], true)
        .await
        .expect_err("add without quorum");
    assert!(matches!(err, EtcdError::UnhealthyCluster), "{err:?}");
    // A remove never answers: only the client's deadline ends it.
    let short = c.with_timeout(Duration::from_secs(1));
    let clock = Instant::now();
    let err = short
        .member_remove(&ep1, added.id)
        .await
        .expect_err("remove without quorum");
    let waited = clock.elapsed();
    eprintln!("events: remove without quorum gave up after {waited:?} (timeout 1 s)");
    match &err {
        EtcdError::Timeout { endpoint, after } => {
            assert_eq!((endpoint.as_str(), *after), (ep1.as_str(), Duration::from_secs(1)));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // Status still answers and says there is no leader.
    let status = c.status(&ep1).await.expect("status without quorum");
    assert_eq!(status.leader, None, "{status:?}");
}

#[tokio::test]
async fn etcd_accepts_only_clients_of_its_client_ca_and_dead_endpoints_fail_fast() {
    let t = TestEtcd::new(EtcdCluster::Main);
    let m1 = t.start_new(1).await;
    let ep1 = m1.endpoint();
    assert!(t.client.health(&ep1).await.expect("tool client"));

    // The apiserver's own client certificate for its local etcd works as well.
    let apiserver = t.client_with(&t.cas.etcd_client, &m1.certs.etcd_client);
    assert_eq!(apiserver.member_list(&ep1).await.expect("apiserver client").len(), 1);

    // Refused during or right after the TLS handshake: no HTTP status, so Unreachable.
    let other = ClusterCas::generate("other", OffsetDateTime::now_utc()).expect("other CAs");
    let foreign = issue_tool_client(&other, OffsetDateTime::now_utc()).expect("foreign cert");
    let refused = [
        (
            "a client cert from another cluster's etcd client CA",
            t.client_with(&t.cas.etcd_client, &foreign),
        ),
        (
            "the peer cert (etcd peer CA) as a client cert",
            t.client_with(&t.cas.etcd_client, &m1.certs.etcd_peer),
        ),
        (
            "the apiserver serving cert (cluster CA, serverAuth only)",
            t.client_with(&t.cas.etcd_client, &m1.certs.apiserver),
        ),
        (
            "a client that trusts the peer CA instead of the client CA",
            t.client_with(&t.cas.etcd_peer, &m1.certs.etcd_client),
        ),
    ];
    for (what, client) in refused {
        let err = client.member_list(&ep1).await.expect_err(what);
        assert!(matches!(err, EtcdError::Unreachable { .. }), "{what}: {err:?}");
        eprintln!("refused {what}: {err}");
    }

    // No client certificate at all (plain reqwest; EtcdClient always presents one).
    let bare = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(t.cas.etcd_client.cert_pem.as_bytes()).expect("ca")])
        .no_proxy()
        .build()
        .expect("bare client");
    let reply = bare
        .post(format!("{ep1}/v3/cluster/member/list"))
        .body("{}")
        .send()
        .await;
    assert!(reply.is_err(), "no client cert must be refused: {reply:?}");

    // Nothing listens on a dead endpoint: Unreachable at once, not after the deadline.
    let dead = t.endpoint(200);
    let clock = Instant::now();
    let err = t.client.status(&dead).await.expect_err("dead endpoint");
    eprintln!("dead endpoint refused after {:?}", clock.elapsed());
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err:?}");
    assert!(clock.elapsed() < Duration::from_secs(2), "{:?}", clock.elapsed());
    let err = t.client.health(&dead).await.expect_err("dead endpoint health");
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err:?}");

    // A member that was killed: same.
    m1.process.kill().expect("kill");
    let err = t.client.member_list(&ep1).await.expect_err("killed member");
    assert!(matches!(err, EtcdError::Unreachable { .. }), "{err:?}");
}
