//! Address blocks on loopback. Linux routes all of 127.0.0.0/8 to `lo` without setup, so every
//! emulator (and every test that runs etcd by itself) draws addresses from its own `127.N.0.0/16`
//! and parallel runs never collide.
//!
//! Ownership convention: whoever holds a listening TCP socket on `127.N.255.254:4999` owns block
//! N. The kernel enforces it (a second bind fails), and it is released when the owner dies, even
//! by SIGKILL, so there is nothing to clean up.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use anyhow::{Context, Result, bail};

/// The marker port; see the module doc.
pub const MARKER_PORT: u16 = 4999;

/// An owned `127.N.0.0/16`; dropping it releases the block.
#[derive(Debug)]
pub struct IpBlock {
    n: u8,
    _marker: TcpListener,
}

impl IpBlock {
    /// Claim block `n` (1..=254).
    pub fn claim(n: u8) -> Result<IpBlock> {
        if n == 0 || n == 255 {
            bail!("ip block must be 1..=254, got {n}");
        }
        let marker = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::new(127, n, 255, 254), MARKER_PORT))
            .with_context(|| format!("ip block 127.{n}.0.0/16 is in use by another sandbox"))?;
        Ok(IpBlock { n, _marker: marker })
    }

    /// Claim a free block, starting the search at a pseudo-random place so that parallel
    /// claimers rarely race for the same one.
    pub fn claim_free() -> Result<IpBlock> {
        let start = (std::process::id() as usize).wrapping_mul(7919) % 254;
        for i in 0..254 {
            let n = ((start + i) % 254 + 1) as u8;
            if let Ok(block) = IpBlock::claim(n) {
                return Ok(block);
            }
        }
        bail!("no free 127.N.0.0/16 block on loopback")
    }

    /// N.
    pub fn n(&self) -> u8 {
        self.n
    }

    /// `127.N.hi.lo`.
    pub fn addr(&self, hi: u8, lo: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.n, hi, lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_has_one_owner_until_dropped() {
        let a = IpBlock::claim_free().expect("free block");
        assert!(IpBlock::claim(a.n()).is_err());
        let n = a.n();
        drop(a);
        let again = IpBlock::claim(n).expect("released on drop");
        assert_eq!(again.addr(1, 2), Ipv4Addr::new(127, n, 1, 2));
    }
}
