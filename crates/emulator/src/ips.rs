//! The address plan of one emulator, and the allocator that follows it.
//!
//! An emulator owns block N (1..=254, claimed with the marker socket of
//! [`crate::ipblock::IpBlock`]). Its addresses come from RFC 2544's benchmarking range
//! 198.18.0.0/15, which is never routed on real networks, so a route the sandbox adds for it
//! can shadow nothing real:
//!
//! ```text
//! 198.18.N.0/24   the VPC: nic0 networkIPs and INTERNAL addresses, 198.18.N.2 – .253
//!   198.18.N.1      the VPC gateway (the sandbox's router, on every VM's link)
//!   198.18.N.254    the machine itself, as a host on the VPC (its end of the router link)
//! 198.19.N.0/24   external: EXTERNAL addresses, ephemeral NAT and forwarding-rule IPs, .1 – .253
//!   198.19.N.254    the machine itself, as a client on the internet
//! ```
//!
//! Allocation hands out every never-used address of a range first, in order, and only then
//! addresses that were released, least recently released first: a short run never sees an
//! address twice (an old VM's IP is not confused with a new one's), and a long benchmark run
//! does not run out. An address in use is never handed out; addresses a caller requested
//! explicitly are tracked too, so allocation skips them while they are in use.

use std::collections::{HashSet, VecDeque};
use std::net::Ipv4Addr;

use super::error::ApiError;

/// Where the addresses of block N are (see the module doc). The sandbox builds its network
/// from the same plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPlan {
    n: u8,
}

impl AddressPlan {
    /// The plan of block `n`.
    pub fn new(n: u8) -> AddressPlan {
        AddressPlan { n }
    }

    /// N.
    pub fn block(self) -> u8 {
        self.n
    }

    /// `198.18.N.0`: the VPC network, a /24.
    pub fn vpc_network(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 0)
    }

    /// `198.19.N.0`: the external addresses, a /24.
    pub fn external_network(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, self.n, 0)
    }

    /// The prefix length of both networks.
    pub const PREFIX: u8 = 24;

    /// `198.18.N.1`: the VPC gateway.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 1)
    }

    /// `198.18.N.254`: the machine's own address on the VPC.
    pub fn machine_internal(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 254)
    }

    /// `198.19.N.254`: the machine's own address among external ones.
    pub fn machine_external(self) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, self.n, 254)
    }

    /// Whether `ip` is in the VPC network.
    pub fn is_internal(self, ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        o[0] == 198 && o[1] == 18 && o[2] == self.n
    }

    /// Whether `ip` is in the external network.
    pub fn is_external(self, ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        o[0] == 198 && o[1] == 19 && o[2] == self.n
    }

    /// The addresses `range` hands out, in allocation order.
    fn pool(self, range: Range) -> impl Iterator<Item = Ipv4Addr> {
        let (second, first, last) = match range {
            Range::Internal => (18, 2, 253),
            Range::External => (19, 1, 253),
        };
        let n = self.n;
        (first..=last).map(move |lo| Ipv4Addr::new(198, second, n, lo))
    }

    fn contains(self, range: Range, ip: Ipv4Addr) -> bool {
        let lo = ip.octets()[3];
        match range {
            Range::Internal => self.is_internal(ip) && (2..=253).contains(&lo),
            Range::External => self.is_external(ip) && (1..=253).contains(&lo),
        }
    }
}

/// Which range an address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `networkIP`s and INTERNAL addresses.
    Internal,
    /// EXTERNAL addresses, ephemeral NAT IPs, ephemeral forwarding-rule IPs.
    External,
}

impl Range {
    const ALL: [Range; 2] = [Range::Internal, Range::External];

    fn index(self) -> usize {
        match self {
            Range::Internal => 0,
            Range::External => 1,
        }
    }
}

/// One range's allocation state: how far the never-used addresses go, and the released ones.
#[derive(Debug, Default)]
struct RangeState {
    fresh_used: usize,
    released: VecDeque<Ipv4Addr>,
}

/// The allocator of one emulator.
#[derive(Debug)]
pub struct IpPool {
    plan: AddressPlan,
    ranges: [RangeState; 2],
    in_use: HashSet<Ipv4Addr>,
}

impl IpPool {
    /// An empty pool over block `block`'s plan.
    pub fn new(block: u8) -> Self {
        IpPool {
            plan: AddressPlan::new(block),
            ranges: Default::default(),
            in_use: HashSet::new(),
        }
    }

    /// N of the block.
    pub fn block(&self) -> u8 {
        self.plan.block()
    }

    /// A free address from `range` (never-used first, then least recently released), now in use.
    pub fn allocate(&mut self, range: Range) -> Result<Ipv4Addr, ApiError> {
        let state = &mut self.ranges[range.index()];
        let fresh: Vec<Ipv4Addr> = self.plan.pool(range).skip(state.fresh_used).collect();
        for ip in fresh {
            state.fresh_used += 1;
            if self.in_use.insert(ip) {
                return Ok(ip);
            }
        }
        while let Some(ip) = state.released.pop_front() {
            if self.in_use.insert(ip) {
                return Ok(ip);
            }
        }
        Err(ApiError::Injected {
            code: 403,
            status: "RESOURCE_EXHAUSTED".into(),
            message: format!(
                "Quota 'IN_USE_ADDRESSES' exceeded: every {range:?} address of the emulator's block {} is in use",
                self.plan.block()
            ),
        })
    }

    /// Whether `ip` is held by anything.
    pub fn is_used(&self, ip: Ipv4Addr) -> bool {
        self.in_use.contains(&ip)
    }

    /// Mark a requested address as in use.
    pub fn claim(&mut self, ip: Ipv4Addr) {
        self.in_use.insert(ip);
    }

    /// The holder let go of `ip`: it may be handed out again once every never-used address of
    /// its range has been (see the module doc).
    pub fn release(&mut self, ip: Ipv4Addr) {
        if !self.in_use.remove(&ip) {
            return;
        }
        for range in Range::ALL {
            if self.plan.contains(range, ip) {
                let state = &mut self.ranges[range.index()];
                state.released.retain(|r| *r != ip);
                state.released.push_back(ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_start_where_the_plan_says_and_skip_the_link_addresses() {
        let mut pool = IpPool::new(7);
        let a = pool.allocate(Range::Internal).expect("internal");
        assert_eq!(a, Ipv4Addr::new(198, 18, 7, 2), "198.18.7.1 is the gateway");
        let e = pool.allocate(Range::External).expect("external");
        assert_eq!(e, Ipv4Addr::new(198, 19, 7, 1));
        let plan = AddressPlan::new(7);
        assert_eq!(plan.gateway(), Ipv4Addr::new(198, 18, 7, 1));
        assert_eq!(plan.machine_internal(), Ipv4Addr::new(198, 18, 7, 254));
        assert_eq!(plan.machine_external(), Ipv4Addr::new(198, 19, 7, 254));
        let internal: Vec<Ipv4Addr> = plan.pool(Range::Internal).collect();
        let external: Vec<Ipv4Addr> = plan.pool(Range::External).collect();
        for link in [plan.gateway(), plan.machine_internal(), plan.machine_external()] {
            assert!(!internal.contains(&link) && !external.contains(&link), "{link}");
        }
        assert!(plan.is_internal(a) && !plan.is_external(a) && plan.is_external(e));
    }

    #[test]
    fn a_released_address_comes_back_only_after_every_fresh_one() {
        let mut pool = IpPool::new(3);
        let first = pool.allocate(Range::Internal).expect("room");
        pool.release(first);
        assert!(!pool.is_used(first));
        let mut seen = vec![];
        for _ in 0..251 {
            seen.push(pool.allocate(Range::Internal).expect("room"));
        }
        assert!(!seen.contains(&first), "reused before the fresh ones ran out");
        assert_eq!(pool.allocate(Range::Internal).ok(), Some(first));
    }

    #[test]
    fn reuse_is_least_recently_released_first_and_never_in_use() {
        let mut pool = IpPool::new(4);
        let all: Vec<Ipv4Addr> = (0..253)
            .map(|_| pool.allocate(Range::External).expect("room"))
            .collect();
        assert!(pool.allocate(Range::External).is_err(), "exhausted, not wrapped");
        let (x, y, z) = (all[10], all[20], all[30]);
        pool.release(y);
        pool.release(x);
        pool.release(z);
        // a caller takes z explicitly while it is free: it must not be handed out again
        pool.claim(z);
        assert_eq!(pool.allocate(Range::External).ok(), Some(y));
        assert_eq!(pool.allocate(Range::External).ok(), Some(x));
        assert!(pool.allocate(Range::External).is_err(), "z is in use");
    }

    #[test]
    fn requested_addresses_are_skipped() {
        let mut pool = IpPool::new(3);
        pool.claim(Ipv4Addr::new(198, 18, 3, 2));
        assert_eq!(pool.allocate(Range::Internal).ok(), Some(Ipv4Addr::new(198, 18, 3, 3)));
        // releasing an address from outside the plan is fine and never hands it out
        pool.claim(Ipv4Addr::new(10, 0, 0, 5));
        pool.release(Ipv4Addr::new(10, 0, 0, 5));
        assert!(!pool.is_used(Ipv4Addr::new(10, 0, 0, 5)));
    }
}
