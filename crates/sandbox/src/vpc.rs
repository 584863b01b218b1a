//! The sandbox's VPC network: one "router" network namespace per sandbox, the only thing that
//! touches the machine's own namespace, and the links from it to every VM.
//!
//! ```text
//!  machine (root netns)                 router netns                       VM netns (one per VM)
//!  khvpc<N>  198.18.N.254/32  ───veth───  uplink 198.18.N.1/32
//!            198.19.N.254/32              vm<k>  198.18.N.1/32  ───veth───  eth0 <networkIP>/32
//!  routes: 198.18.N.0/24, 198.19.N.0/24   routes: <networkIP>/32 dev vm<k>   default via 198.18.N.1
//!          via 198.18.N.1 (nothing else)          (no default route)         lo: 127.0.0.1, 169.254.169.254
//! ```
//! (addresses from [`AddressPlan`]). The machine gets that one link and two routes: no default
//! route changes, no firewall rules. Its traffic to the VPC leaves from `198.18.N.254` (a host on
//! the VPC) and its traffic to external IPs from `198.19.N.254` (a client on the internet), so
//! firewall rules can tell the two apart. The router has a route per VM and none by default, so
//! a packet for an address the sandbox does not own is dropped, never sent off the machine.
//!
//! GCE's 1:1 NAT of an access config's external IP is DNAT to the VM's networkIP in the router
//! (for traffic that arrives and for traffic the router itself starts), and SNAT of that VM's
//! traffic leaving the VPC or going through another external IP ([`nat_ruleset`]). A forwarding
//! rule's IP is an address on the router's `lo`, where the load balancer listens (`proxy.rs`).
//!
//! Nothing here outlives the sandbox: the router's holder dies with the emulator (see `ns.rs`),
//! the kernel destroys its namespace, the veth pair with it, and the machine's routes with the
//! link. No `ip netns add`: its bind-mounted namespace files would survive a SIGKILL.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use kube_ha_emulator::ips::AddressPlan;

use super::ns::{self, Holder, Namespaces, NetnsRuntime};

/// The router's end of the machine's link.
const UPLINK: &str = "uplink";

/// How long a holder gets to set up (a loaded 2-core machine forks slowly).
pub const HOLDER_READY_WITHIN: Duration = Duration::from_secs(20);

/// How long creating the machine's link keeps retrying while the link of an earlier sandbox with
/// the same block is still being torn down by the kernel (after a SIGKILL it takes a moment).
const STALE_LINK_WAIT: Duration = Duration::from_secs(15);

/// The name of the nftables table of the router's NAT.
const NAT_TABLE: &str = "vpc_nat";

/// The machine's link to block N's router.
pub fn machine_link(plan: AddressPlan) -> String {
    format!("khvpc{}", plan.block())
}

/// One sandbox's router (see the module doc).
#[derive(Debug)]
pub struct Vpc {
    plan: AddressPlan,
    ns: Namespaces,
    runtime: NetnsRuntime,
    next_link: AtomicU32,
    // Last: dropped after the runtime and the descriptors, so the namespace can go at once.
    holder: Holder,
}

impl Vpc {
    /// Create the router and link it to the machine. Blocking. `sandbox_dir` appears on the
    /// holder's command line (so `sandbox stop` can find it); `log` gets its stderr.
    pub fn create(plan: AddressPlan, sandbox_dir: &Path, log: &Path) -> Result<Vpc> {
        let log = ns::append_log(log)?;
        let mut holder = Command::new("unshare");
        holder
            .args([
                "--net",
                "--fork",
                "--kill-child",
                "--",
                "sh",
                "-c",
                "echo ready; exec sleep infinity",
            ])
            .arg("vpc-router")
            .arg(sandbox_dir);
        let holder = Holder::start(holder, log, HOLDER_READY_WITHIN).context("starting the VPC router")?;
        let ns = Namespaces::net_of(holder.pid())?;
        link_machine(plan, holder.pid())?;
        let g = plan.gateway();
        let router = format!(
            "link set lo up\n\
             addr add {g}/32 dev {UPLINK}\n\
             link set {UPLINK} up\n\
             route add {}/32 dev {UPLINK}\n\
             route add {}/32 dev {UPLINK}\n",
            plan.machine_internal(),
            plan.machine_external(),
        );
        ns::run(Some(&ns), "ip", &["-batch", "-"], Some(&router)).context("configuring the VPC router")?;
        ns::run(Some(&ns), "nft", &["-f", "-"], Some(&nat_ruleset(plan, &[]))).context("the router's NAT table")?;
        // /proc/sys/net is that of the network namespace of the process that opens it. An address
        // nobody owns answers "unreachable" at once, every time: the kernel's default ICMP rate
        // limit would turn most of a poller's attempts into silent timeouts.
        ns::run(
            Some(&ns),
            "sh",
            &[
                "-c",
                "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 0 > /proc/sys/net/ipv4/icmp_ratelimit",
            ],
            None,
        )
        .context("enabling forwarding in the VPC router")?;
        let runtime = NetnsRuntime::start("vpc-router", &ns)?;
        tracing::info!(
            link = %machine_link(plan),
            vpc = %format!("{}/{}", plan.vpc_network(), AddressPlan::PREFIX),
            external = %format!("{}/{}", plan.external_network(), AddressPlan::PREFIX),
            "sandbox VPC up"
        );
        Ok(Vpc {
            plan,
            ns,
            runtime,
            next_link: AtomicU32::new(0),
            holder,
        })
    }

    /// The address plan.
    pub fn plan(&self) -> AddressPlan {
        self.plan
    }

    /// The router's namespace.
    pub fn namespaces(&self) -> &Namespaces {
        &self.ns
    }

    /// The router holder's pid.
    pub fn pid(&self) -> u32 {
        self.holder.pid()
    }

    /// The thread whose sockets are the router's (the load balancers').
    pub fn runtime(&self) -> &NetnsRuntime {
        &self.runtime
    }

    /// Link a VM (namespaces held by `vm_pid`) to the router: its `eth0` with `ip`/32 and a
    /// default route through the gateway; a route to it in the router. Returns the router-side
    /// link's name. Blocking.
    pub fn attach(&self, vm: &Namespaces, vm_pid: u32, ip: Ipv4Addr) -> Result<String> {
        let link = format!("vm{}", self.next_link.fetch_add(1, Ordering::Relaxed));
        let g = self.plan.gateway();
        // `replace`: a VM recreated on the same IP may find its predecessor's route still there
        // while the kernel tears the old namespace down.
        let router = format!(
            "link add {link} type veth peer name eth0 netns {vm_pid}\n\
             addr add {g}/32 dev {link}\n\
             link set {link} up\n\
             route replace {ip}/32 dev {link}\n"
        );
        ns::run(Some(&self.ns), "ip", &["-batch", "-"], Some(&router))
            .with_context(|| format!("linking {ip} to the VPC router"))?;
        let inside = format!(
            "addr add {ip}/32 dev eth0\n\
             link set eth0 up\n\
             route add default via {g} dev eth0 onlink\n"
        );
        ns::run(Some(vm), "ip", &["-batch", "-"], Some(&inside))
            .with_context(|| format!("configuring eth0 of {ip}"))?;
        Ok(link)
    }

    /// Remove a VM's link (both ends go). Blocking; a link already gone is fine.
    pub fn detach(&self, link: &str) {
        if let Err(e) = ns::run(Some(&self.ns), "ip", &["link", "del", link], None) {
            tracing::debug!(link, "detach: {e:#}");
        }
    }

    /// Make the router's NAT the 1:1 NAT of `pairs` (external, internal). Blocking.
    pub fn apply_nat(&self, pairs: &[(Ipv4Addr, Ipv4Addr)]) -> Result<()> {
        ns::run(
            Some(&self.ns),
            "nft",
            &["-f", "-"],
            Some(&nat_ruleset(self.plan, pairs)),
        )
        .context("updating the router's NAT")?;
        Ok(())
    }

    /// Add or remove addresses on the router's `lo` (forwarding-rule IPs). Blocking.
    pub fn local_addresses(&self, add: &[Ipv4Addr], remove: &[Ipv4Addr]) -> Result<()> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let gone: String = remove.iter().map(|ip| format!("addr del {ip}/32 dev lo\n")).collect();
        if !gone.is_empty() {
            // `-force`: one address already gone must not keep the others.
            let _ = ns::run(Some(&self.ns), "ip", &["-force", "-batch", "-"], Some(&gone));
        }
        let new: String = add.iter().map(|ip| format!("addr replace {ip}/32 dev lo\n")).collect();
        if !new.is_empty() {
            ns::run(Some(&self.ns), "ip", &["-batch", "-"], Some(&new))
                .context("forwarding-rule addresses on the router")?;
        }
        Ok(())
    }
}

/// The machine's end: the link, its two addresses and the two routes (see the module doc).
fn link_machine(plan: AddressPlan, router_pid: u32) -> Result<()> {
    let link = machine_link(plan);
    let deadline = Instant::now() + STALE_LINK_WAIT;
    loop {
        match ns::run(
            None,
            "ip",
            &[
                "link",
                "add",
                &link,
                "type",
                "veth",
                "peer",
                "name",
                UPLINK,
                "netns",
                &router_pid.to_string(),
            ],
            None,
        ) {
            Ok(_) => break,
            Err(e) if format!("{e:#}").contains("File exists") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "creating {link}: another sandbox uses block {}, or a link is left over",
                        plan.block()
                    )
                });
            }
        }
    }
    // No IPv6 on the machine's end: it would add a link-local address and route.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{link}/disable_ipv6"), "1");
    let g = plan.gateway();
    let batch = format!(
        "addr add {a}/32 dev {link}\n\
         addr add {b}/32 dev {link}\n\
         link set {link} up\n\
         route add {vpc}/{p} via {g} dev {link} onlink src {a}\n\
         route add {ext}/{p} via {g} dev {link} onlink src {b}\n",
        a = plan.machine_internal(),
        b = plan.machine_external(),
        vpc = plan.vpc_network(),
        ext = plan.external_network(),
        p = AddressPlan::PREFIX,
    );
    if let Err(e) = ns::run(None, "ip", &["-batch", "-"], Some(&batch)) {
        let _ = ns::run(None, "ip", &["link", "del", &link], None);
        bail!("configuring {link}: {e:#}");
    }
    Ok(())
}

/// The router's NAT table for `pairs` (external, internal), replacing any earlier one in one
/// transaction: DNAT of each external IP (arriving, and started by the router itself), SNAT of
/// the VM's traffic that leaves the VPC or was DNATed on its way (through another external IP).
pub fn nat_ruleset(plan: AddressPlan, pairs: &[(Ipv4Addr, Ipv4Addr)]) -> String {
    let vpc = format!("{}/{}", plan.vpc_network(), AddressPlan::PREFIX);
    let mut dnat = String::new();
    let mut snat = String::new();
    for (external, internal) in pairs {
        dnat.push_str(&format!("    ip daddr {external} dnat to {internal}\n"));
        snat.push_str(&format!(
            "    ip saddr {internal} ct status dnat snat to {external}\n    ip saddr {internal} ip daddr != {vpc} snat to {external}\n"
        ));
    }
    format!(
        "table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\ntable ip {NAT_TABLE} {{\n\
         \x20 chain prerouting {{\n    type nat hook prerouting priority -100;\n{dnat}  }}\n\
         \x20 chain output {{\n    type nat hook output priority -100;\n{dnat}  }}\n\
         \x20 chain postrouting {{\n    type nat hook postrouting priority 100;\n{snat}  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_one_nat_is_dnat_in_and_snat_out() {
        let plan = AddressPlan::new(5);
        let rules = nat_ruleset(plan, &[(Ipv4Addr::new(198, 19, 5, 1), Ipv4Addr::new(198, 18, 5, 2))]);
        assert!(
            rules.starts_with("table ip vpc_nat\ndelete table ip vpc_nat\n"),
            "{rules}"
        );
        assert_eq!(rules.matches("ip daddr 198.19.5.1 dnat to 198.18.5.2").count(), 2);
        assert!(rules.contains("ip saddr 198.18.5.2 ct status dnat snat to 198.19.5.1"));
        assert!(rules.contains("ip saddr 198.18.5.2 ip daddr != 198.18.5.0/24 snat to 198.19.5.1"));
        let empty = nat_ruleset(plan, &[]);
        assert!(!empty.contains("nat to"), "{empty}");
        assert_eq!(machine_link(plan), "khvpc5");
    }
}
