//! Quorum projection: may this member be removed without losing etcd quorum? A pure function in
//! the style of Cluster API's `targetEtcdClusterHealthy`: no network call, worst-case counting
//! (an unstarted or unreachable member counts as unhealthy), and every input of the decision is
//! in the refusal message.
//!
//! etcd's fault tolerance (voting members → quorum → failures tolerated):
//!
//! | voting | quorum | tolerates |
//! |---|---|---|
//! | 1 | 1 | 0 |
//! | 2 | 2 | 0 |
//! | 3 | 2 | 1 |
//! | 4 | 3 | 1 |
//! | 5 | 3 | 2 |
//! | 7 | 4 | 3 |
//!
//! Two rules follow. The *current* cluster must have quorum, or the removal itself cannot be
//! committed (etcd hangs without quorum). The *remaining* cluster must keep a healthy quorum, so a
//! healthy victim can only go when the others can carry on; a dead victim can go whenever the
//! rest has quorum, which is what "replace a failed replica" needs.

use crate::etcd::MemberId;

/// A member as the projection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Member ID.
    pub id: MemberId,
    /// Healthy (started, answering, knows a leader).
    pub healthy: bool,
    /// Non-voting.
    pub learner: bool,
}

/// Why a removal is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// The victim is the only voting member.
    #[error("it is the last voting member")]
    LastMember,
    /// A learner (an add in flight) exists: one membership change at a time.
    #[error("a learner ({0}) is in flight; finish or undo that add first")]
    LearnerInFlight(MemberId),
    /// The cluster has already lost quorum: no membership change can be committed.
    #[error(
        "quorum is already lost ({healthy} of {voting} voting members healthy, {quorum} needed); \
         bring members back, or restore from a snapshot"
    )]
    QuorumLost {
        /// Voting members now.
        voting: usize,
        /// Healthy voting members now.
        healthy: usize,
        /// Quorum now.
        quorum: usize,
    },
    /// Removing it would leave fewer healthy voters than the remaining cluster's quorum.
    #[error(
        "removing it would leave {healthy_after} healthy of {voting_after} voting members, below the quorum of {quorum_after}; \
         replace the unhealthy member first"
    )]
    WouldLoseQuorum {
        /// Voting members after.
        voting_after: usize,
        /// Healthy voting members after.
        healthy_after: usize,
        /// Quorum after.
        quorum_after: usize,
    },
}

/// `voting / 2 + 1`.
pub fn quorum(voting: usize) -> usize {
    voting / 2 + 1
}

/// May `victim` be removed from `members`?
pub fn can_remove(members: &[MemberView], victim: MemberId) -> Result<(), QuorumError> {
    if let Some(l) = members.iter().find(|m| m.learner && m.id != victim) {
        return Err(QuorumError::LearnerInFlight(l.id));
    }
    let voting = members.iter().filter(|m| !m.learner).count();
    let healthy = members.iter().filter(|m| !m.learner && m.healthy).count();
    if healthy < quorum(voting) {
        return Err(QuorumError::QuorumLost {
            voting,
            healthy,
            quorum: quorum(voting),
        });
    }
    let Some(v) = members.iter().find(|m| m.id == victim) else {
        return Ok(()); // not a member: nothing to project
    };
    if v.learner {
        return Ok(()); // a learner never counts towards quorum
    }
    let voting_after = voting - 1;
    if voting_after == 0 {
        return Err(QuorumError::LastMember);
    }
    let healthy_after = healthy - usize::from(v.healthy);
    if healthy_after < quorum(voting_after) {
        return Err(QuorumError::WouldLoseQuorum {
            voting_after,
            healthy_after,
            quorum_after: quorum(voting_after),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` voting members, of which the first `dead` are unhealthy, plus `learners` learners.
    fn cluster(n: u64, dead: u64, learners: u64) -> Vec<MemberView> {
        let mut v: Vec<MemberView> = (0..n)
            .map(|i| MemberView {
                id: MemberId(i + 1),
                healthy: i >= dead,
                learner: false,
            })
            .collect();
        v.extend((0..learners).map(|i| MemberView {
            id: MemberId(100 + i),
            healthy: false,
            learner: true,
        }));
        v
    }

    const DEAD_VICTIM: MemberId = MemberId(1); // the first member is dead whenever dead >= 1
    fn healthy_victim(n: u64) -> MemberId {
        MemberId(n)
    }

    #[test]
    fn quorum_table() {
        for (voting, q) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            assert_eq!(quorum(voting), q, "{voting}");
        }
    }

    #[test]
    fn removal_projection_table() {
        use QuorumError::*;
        // (members, dead, learners, victim is dead?, expected)
        type Row = (u64, u64, u64, bool, Result<(), &'static str>);
        let rows: Vec<Row> = vec![
            // can't remove the last member, healthy or not
            (1, 0, 0, false, Err("last")),
            // two members: removing a healthy one from a healthy pair is fine (1 → quorum 1)
            (2, 0, 0, false, Ok(())),
            // two members, one dead: quorum (2) is already lost, nothing can be committed
            (2, 1, 0, true, Err("lost")),
            (2, 1, 0, false, Err("lost")),
            // three: healthy cluster tolerates one removal
            (3, 0, 0, false, Ok(())),
            // can't safely remove a healthy member from three with one additional failure
            (3, 1, 0, false, Err("would lose")),
            // but the dead one can go (replace a failed replica)
            (3, 1, 0, true, Ok(())),
            // three with two dead: quorum lost
            (3, 2, 0, true, Err("lost")),
            // four: remove healthy with one dead → 3 voting, 2 healthy, quorum 2: ok
            (4, 1, 0, false, Ok(())),
            (4, 1, 0, true, Ok(())),
            // four with two dead: quorum (3) lost already
            (4, 2, 0, true, Err("lost")),
            // five
            (5, 0, 0, false, Ok(())),
            (5, 1, 0, false, Ok(())),
            (5, 2, 0, false, Err("would lose")),
            (5, 2, 0, true, Ok(())),
            (5, 3, 0, true, Err("lost")),
            // seven
            (7, 2, 0, false, Ok(())),
            (7, 3, 0, false, Err("would lose")),
            (7, 3, 0, true, Ok(())),
            (7, 4, 0, true, Err("lost")),
            // a learner in flight blocks any other removal, whatever the health
            (3, 0, 1, false, Err("learner")),
            (3, 1, 1, true, Err("learner")),
            (5, 0, 1, false, Err("learner")),
        ];
        for (n, dead, learners, victim_dead, want) in rows {
            let members = cluster(n, dead, learners);
            let victim = if victim_dead { DEAD_VICTIM } else { healthy_victim(n) };
            let got = can_remove(&members, victim);
            let ok = matches!(
                (&got, want),
                (Ok(()), Ok(()))
                    | (Err(LastMember), Err("last"))
                    | (Err(QuorumLost { .. }), Err("lost"))
                    | (Err(WouldLoseQuorum { .. }), Err("would lose"))
                    | (Err(LearnerInFlight(_)), Err("learner"))
            );
            assert!(
                ok,
                "{n} members, {dead} dead, {learners} learners, victim dead {victim_dead}: got {got:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn the_learner_itself_can_always_be_removed_while_quorum_holds() {
        let members = cluster(3, 0, 1);
        assert_eq!(can_remove(&members, MemberId(100)), Ok(()));
        let members = cluster(1, 0, 1);
        assert_eq!(can_remove(&members, MemberId(100)), Ok(()));
    }

    #[test]
    fn messages_carry_every_input() {
        let err = can_remove(&cluster(3, 1, 0), healthy_victim(3)).expect_err("unsafe");
        assert_eq!(
            err.to_string(),
            "removing it would leave 1 healthy of 2 voting members, below the quorum of 2; replace the unhealthy member first"
        );
    }
}
