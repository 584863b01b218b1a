//! Address allocation inside the emulator's loopback block `127.N.0.0/16`:
//! internal addresses from `127.N.1.1` up to `127.N.63.254`, external ones (static and
//! ephemeral) from `127.N.128.1` up to `127.N.254.254`. Counters only go up, so an address is
//! never handed out twice in one run (a VM's old IP can't be confused with a new one); addresses a
//! caller requested explicitly are tracked too, so allocation skips them while they are in use.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::error::ApiError;

/// Which range an address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `networkIP`s and INTERNAL addresses.
    Internal,
    /// EXTERNAL addresses, ephemeral NAT IPs, ephemeral forwarding-rule IPs.
    External,
}

impl Range {
    /// (first, last) third octet.
    fn octets(self) -> (u8, u8) {
        match self {
            Range::Internal => (1, 63),
            Range::External => (128, 254),
        }
    }
}

/// The allocator of one emulator.
#[derive(Debug)]
pub struct IpPool {
    block: u8,
    next_internal: u32,
    next_external: u32,
    in_use: HashSet<Ipv4Addr>,
}

impl IpPool {
    /// An empty pool over `127.block.0.0/16`.
    pub fn new(block: u8) -> Self {
        IpPool {
            block,
            next_internal: 0,
            next_external: 0,
            in_use: HashSet::new(),
        }
    }

    /// N of `127.N.0.0/16`.
    pub fn block(&self) -> u8 {
        self.block
    }

    /// A never-used address from `range`, now in use.
    pub fn allocate(&mut self, range: Range) -> Result<Ipv4Addr, ApiError> {
        let (first, last) = range.octets();
        let per_octet = 254u32;
        let capacity = u32::from(last - first + 1) * per_octet;
        loop {
            let next = match range {
                Range::Internal => &mut self.next_internal,
                Range::External => &mut self.next_external,
            };
            if *next >= capacity {
                return Err(ApiError::Injected {
                    code: 403,
                    status: "RESOURCE_EXHAUSTED".into(),
                    message: format!(
                        "Quota 'IN_USE_ADDRESSES' exceeded: the emulator's {range:?} range of 127.{}.0.0/16 is used up",
                        self.block
                    ),
                });
            }
            let index = *next;
            *next += 1;
            // both values fit a u8: index / 254 < last - first + 1, index % 254 + 1 <= 254
            let hi = first + (index / per_octet) as u8;
            let lo = (index % per_octet) as u8 + 1;
            let ip = Ipv4Addr::new(127, self.block, hi, lo);
            if self.in_use.insert(ip) {
                return Ok(ip);
            }
        }
    }

    /// Whether `ip` is held by anything.
    pub fn is_used(&self, ip: Ipv4Addr) -> bool {
        self.in_use.contains(&ip)
    }

    /// Mark a requested address as in use.
    pub fn claim(&mut self, ip: Ipv4Addr) {
        self.in_use.insert(ip);
    }

    /// The holder let go of `ip` (it is still never allocated again).
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.in_use.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_start_where_the_contract_says_and_never_reuse() {
        let mut pool = IpPool::new(7);
        let a = pool.allocate(Range::Internal).expect("internal");
        assert_eq!(a, Ipv4Addr::new(127, 7, 1, 1));
        let e = pool.allocate(Range::External).expect("external");
        assert_eq!(e, Ipv4Addr::new(127, 7, 128, 1));
        pool.release(a);
        assert!(!pool.is_used(a));
        assert_eq!(pool.allocate(Range::Internal).ok(), Some(Ipv4Addr::new(127, 7, 1, 2)));
    }

    #[test]
    fn requested_addresses_are_skipped_and_octets_roll_over() {
        let mut pool = IpPool::new(3);
        pool.claim(Ipv4Addr::new(127, 3, 1, 1));
        assert_eq!(pool.allocate(Range::Internal).ok(), Some(Ipv4Addr::new(127, 3, 1, 2)));
        for _ in 0..252 {
            pool.allocate(Range::Internal).expect("room");
        }
        assert_eq!(pool.allocate(Range::Internal).ok(), Some(Ipv4Addr::new(127, 3, 2, 1)));
    }

    #[test]
    fn exhaustion_is_an_error_not_a_wrap() {
        let mut pool = IpPool::new(1);
        for _ in 0..(63 * 254) {
            pool.allocate(Range::Internal).expect("room");
        }
        assert!(pool.allocate(Range::Internal).is_err());
    }
}
