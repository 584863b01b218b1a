//! Who takes etcd leadership from a replica that is being removed (SPEC §4.3), pure: the
//! executor asks each candidate for its status and this decides, so the rule has a table test
//! like the quorum projection (code review §1a).
//!
//! The rule: a voting member other than the victim that answered its own status without errors
//! and is not a learner; among those the most caught up (highest raft index), so the transfer
//! has the least to replicate before the new leader can lead; ties go to the lowest member ID,
//! so the choice is the same on every run.

use crate::etcd::{EndpointStatus, Member, MemberId};

/// One candidate as the executor found it: the member and what its own endpoint answered
/// (`None`: it could not be asked, e.g. its master is unreachable over SSH).
pub type Candidate<'a> = (&'a Member, Option<&'a EndpointStatus>);

/// The member to hand leadership to, if any can take it.
pub fn pick_transferee(candidates: &[Candidate<'_>], victim: MemberId) -> Option<MemberId> {
    candidates
        .iter()
        .filter(|(m, _)| m.id != victim && !m.is_learner)
        .filter_map(|(m, st)| {
            let st = (*st)?;
            (st.errors.is_empty() && !st.is_learner && st.member_id == m.id).then_some((st.raft_index, m.id))
        })
        .max_by(|(ia, a), (ib, b)| ia.cmp(ib).then(b.cmp(a)))
        .map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, learner: bool) -> Member {
        Member {
            id: MemberId(id),
            name: format!("etcd-m{id}"),
            peer_urls: vec![],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    fn status(id: u64, raft_index: u64, errors: &[&str]) -> EndpointStatus {
        EndpointStatus {
            member_id: MemberId(id),
            leader: Some(MemberId(1)),
            raft_index,
            raft_applied_index: raft_index,
            raft_term: 2,
            is_learner: false,
            errors: errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn leadership_goes_to_the_most_caught_up_healthy_voter() {
        let (m1, m2, m3, l4) = (member(1, false), member(2, false), member(3, false), member(4, true));
        let (s1, s2, s3, s4) = (
            status(1, 90, &[]),
            status(2, 50, &[]),
            status(3, 70, &[]),
            status(4, 99, &[]),
        );
        let s2_alarm = status(2, 95, &["NOSPACE"]);
        let s3_wrong = status(9, 99, &[]);
        type Row<'a> = (&'a str, Vec<Candidate<'a>>, Option<u64>);
        let rows: Vec<Row> = vec![
            (
                "the highest raft index",
                vec![(&m1, Some(&s1)), (&m2, Some(&s2)), (&m3, Some(&s3))],
                Some(3),
            ),
            ("never the victim", vec![(&m1, Some(&s1))], None),
            (
                "never a learner, however caught up",
                vec![(&m2, Some(&s2)), (&l4, Some(&s4))],
                Some(2),
            ),
            (
                "not one that reports errors",
                vec![(&m2, Some(&s2_alarm)), (&m3, Some(&s3))],
                Some(3),
            ),
            (
                "not one that could not be asked",
                vec![(&m2, None), (&m3, Some(&s3))],
                Some(3),
            ),
            (
                "not an endpoint that answers as another member",
                vec![(&m2, Some(&s2)), (&m3, Some(&s3_wrong))],
                Some(2),
            ),
            ("nobody to take it", vec![(&m2, None), (&l4, Some(&s4))], None),
        ];
        for (what, candidates, want) in rows {
            assert_eq!(pick_transferee(&candidates, MemberId(1)), want.map(MemberId), "{what}");
        }
        let tie = [(&m3, Some(&status(3, 70, &[]))), (&m2, Some(&status(2, 70, &[])))];
        assert_eq!(
            pick_transferee(&tie, MemberId(1)),
            Some(MemberId(2)),
            "a tie goes to the lowest ID"
        );
    }
}
