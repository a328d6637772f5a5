//! Hosts of a test's own on one machine: each a network namespace with an address of its
//! own, linked to the test (the root namespace) through a bridge, whose link can be cut and
//! restored. Roles started in a host reach servers the test runs on [`Hosts::gateway`]; a host
//! cut off reaches nothing and nothing reaches it, as a machine whose network failed.
//!
//! Needs root (`ip netns`, `ip link`), as CI and the development machines have. Names carry
//! the process id, so test binaries running side by side do not meet; everything is removed
//! on drop.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

/// A set of hosts on one test network, `10.77.<n>.0/24`: the test is `.1`, host `i` is
/// `.(i + 2)`.
pub struct Hosts {
    bridge: String,
    subnet: u8,
    hosts: Vec<Host>,
}

/// One host: a network namespace with one interface, `eth0`.
pub struct Host {
    namespace: String,
    /// The test's end of the host's link (cut to cut the host off).
    link: String,
    address: Ipv4Addr,
}

impl Hosts {
    /// Creates `count` hosts on a network of their own.
    ///
    /// # Panics
    ///
    /// If a step fails (not root, or `ip` missing); the message names the step.
    pub fn create(count: usize) -> Hosts {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let pid = std::process::id();
        let number = NEXT.fetch_add(1, Ordering::Relaxed);
        // One subnet per set of hosts: from the process id and a counter, 1..=250.
        let subnet = ((pid.wrapping_mul(7) + u32::from(number)) % 250 + 1) as u8;
        let tag = format!("{}{}", pid % 100_000, number % 10);
        let mut hosts = Hosts {
            bridge: format!("gb{tag}"),
            subnet,
            hosts: Vec::new(),
        };
        ip(&["link", "add", &hosts.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", hosts.gateway()),
            "dev",
            &hosts.bridge,
        ]);
        ip(&["link", "set", &hosts.bridge, "up"]);
        for index in 0..count {
            let host = Host {
                namespace: format!("g{tag}h{index}"),
                link: format!("g{tag}v{index}"),
                address: Ipv4Addr::new(10, 77, subnet, (index + 2) as u8),
            };
            let peer = format!("g{tag}p{index}");
            ip(&["netns", "add", &host.namespace]);
            ip(&[
                "link", "add", &host.link, "type", "veth", "peer", "name", &peer,
            ]);
            ip(&["link", "set", &peer, "netns", &host.namespace]);
            host.ip(&["link", "set", &peer, "name", "eth0"]);
            host.ip(&[
                "addr",
                "add",
                &format!("{}/24", host.address),
                "dev",
                "eth0",
            ]);
            host.ip(&["link", "set", "eth0", "up"]);
            host.ip(&["link", "set", "lo", "up"]);
            ip(&["link", "set", &host.link, "master", &hosts.bridge]);
            ip(&["link", "set", &host.link, "up"]);
            hosts.hosts.push(host);
        }
        hosts
    }

    /// The test's own address on the network: servers the hosts must reach listen on it.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// Host `index`.
    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Always false: a set has hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Cuts host `index` off the network (its link goes down): what it sends is lost, and
    /// nothing reaches it.
    pub fn cut(&self, index: usize) {
        ip(&["link", "set", &self.hosts[index].link, "down"]);
    }

    /// Puts host `index` back on the network.
    pub fn restore(&self, index: usize) {
        ip(&["link", "set", &self.hosts[index].link, "up"]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &self.hosts {
            // Deleting the namespace deletes the link pair with it.
            let _ = Command::new("ip")
                .args(["netns", "del", &host.namespace])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

impl Host {
    /// The host's address.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The host's network namespace, for `ip netns exec`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A command that runs `program` on this host (`ip netns exec <namespace> program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.namespace, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }
}

/// Runs `ip args...`, panicking with its error output when it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run ip {args:?}: {err} (install iproute2)"));
    assert!(
        output.status.success(),
        "ip {} failed (test hosts need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}
