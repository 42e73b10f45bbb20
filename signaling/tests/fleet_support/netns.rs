//! A test host of its own: a network namespace joined to this one by a veth pair, so a
//! node inside has its own address and can be cut off (its link down) while it runs.
//! Needs root and iproute2 (`deploy/test.sh` installs it; CI runs as root). Addresses are
//! from 198.18.0.0/15, the range set aside for benchmarking networks (RFC 2544), one /30
//! per namespace; everything is deleted on drop.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace and the link to it.
pub struct TestNet {
    /// The namespace's name.
    pub ns: String,
    host_if: String,
    /// This side's address on the link.
    pub host_ip: IpAddr,
    /// The namespace's address.
    pub ns_ip: IpAddr,
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed (network namespaces need root): {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl TestNet {
    /// A new namespace with its link up.
    pub fn create() -> Result<Self, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = N.fetch_add(1, Ordering::Relaxed);
        // 2^15 /30 networks in 198.18.0.0/15: the pid and `n` pick one; one in use (a
        // concurrent test's, an earlier run's leftover) is skipped.
        let (host_ip, ns_ip) = (0..64u32)
            .map(|k| ((pid % 8192) * 4 + n + k * 131) % (1 << 15))
            .map(|subnet| {
                let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + subnet * 4;
                (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
            })
            .find(|(host, _)| {
                ip(&["-o", "addr", "show", "to", &format!("{host}/30")])
                    .is_ok_and(|out| out.trim().is_empty())
            })
            .ok_or("no free test network in 198.18.0.0/15")?;
        let net = Self {
            ns: format!("chorus-{pid}-{n}"),
            host_if: format!("ch{}h{n}", pid % 100_000),
            host_ip: IpAddr::V4(host_ip),
            ns_ip: IpAddr::V4(ns_ip),
        };
        let peer_if = format!("ch{}n{n}", pid % 100_000);
        ip(&["netns", "add", &net.ns])?;
        ip(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
        ])?;
        ip(&["link", "set", &peer_if, "netns", &net.ns])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &net.host_if])?;
        ip(&["link", "set", &net.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", net.ns.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{ns_ip}/30"), "dev", &peer_if])?;
        inside(&["link", "set", &peer_if, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(net)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` becomes the
    /// program: its pid is the program's).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns]).arg(program);
        command
    }

    /// Cut the link: nothing passes either way, the processes inside keep running.
    pub fn cut(&self) {
        if let Err(e) = ip(&["link", "set", &self.host_if, "down"]) {
            panic!("cannot cut the test network: {e}");
        }
    }

    /// Bring the link back.
    pub fn heal(&self) {
        if let Err(e) = ip(&["link", "set", &self.host_if, "up"]) {
            panic!("cannot heal the test network: {e}");
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = ip(&["netns", "del", &self.ns]);
        let _ = ip(&["link", "del", &self.host_if]);
    }
}
