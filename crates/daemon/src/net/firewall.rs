//! The daemon's packet filter: one nftables table of its own (`network.nftables_table`), so
//! several daemons share a host and nothing else's rules are touched. It gives the original's
//! defaults (SPEC 3.6): a container may not reach the host (unless `allow_host_access`) nor
//! any other network, other containers included (unless `allow_networks` lists it); replies
//! to connections it may make are let through; nothing from outside reaches a container.
//! net_in/net_out rules will go into per-container chains of the same table.
//!
//! The table is written with one `nft -f -` transaction at startup (replacing any previous
//! version), and kept when the daemon stops: the containers, which outlive it, stay fenced.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::config::{Ipv4Cidr, NetworkConfig};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("cannot run nft (apt-get install nftables): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused the {table} rules: {stderr}")]
    Rejected { table: String, stderr: String },
}

/// The ruleset of the table, as `nft -f` takes it.
pub fn ruleset(table: &str, net: &NetworkConfig) -> String {
    let pool = net.pool_network;
    let mut input = vec![format!(
        "ip saddr {pool} ct state established,related accept"
    )];
    if !net.allow_host_access {
        input.push(format!(
            "ip saddr {pool} reject with icmp type admin-prohibited"
        ));
    }
    let mut forward = vec![
        format!("ip saddr {pool} ct state established,related accept"),
        format!("ip daddr {pool} ct state established,related accept"),
    ];
    if !net.allow_networks.is_empty() {
        let set: Vec<String> = net.allow_networks.iter().map(Ipv4Cidr::to_string).collect();
        forward.push(format!(
            "ip saddr {pool} ip daddr {{ {} }} accept",
            set.join(", ")
        ));
    }
    forward.push(format!(
        "ip saddr {pool} reject with icmp type admin-prohibited"
    ));
    forward.push(format!("ip daddr {pool} drop"));
    let chain = |name: &str, hook: &str, rules: &[String]| {
        let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
        format!(
            "  chain {name} {{\n    type filter hook {hook} priority filter; policy accept;\n{body}  }}\n"
        )
    };
    format!(
        "add table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n{}{}}}\n",
        chain("input", "input", &input),
        chain("forward", "forward", &forward),
    )
}

fn nft(script: &str, table: &str) -> Result<(), FirewallError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(FirewallError::Spawn)?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())
        .map_err(FirewallError::Spawn)?;
    let out = child.wait_with_output().map_err(FirewallError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FirewallError::Rejected {
            table: table.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Installs (or replaces) the daemon's table.
pub fn install(table: &str, net: &NetworkConfig) -> Result<(), FirewallError> {
    nft(&ruleset(table, net), table)
}

/// Removes the daemon's table; fine if it is not there.
pub fn remove(table: &str) -> Result<(), FirewallError> {
    nft(
        &format!("add table ip {table}\ndelete table ip {table}\n"),
        table,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_follows_the_config() {
        let mut net = crate::config::Config::resolve(
            &Default::default(),
            crate::config::Host {
                ephemeral_port_top: 60999,
            },
        )
        .unwrap()
        .network;
        let r = ruleset("wt", &net);
        assert!(
            r.starts_with("add table ip wt\ndelete table ip wt\ntable ip wt {\n"),
            "{r}"
        );
        assert!(r.contains("ip saddr 10.254.0.0/24 reject with icmp type admin-prohibited\n  }\n  chain forward"), "{r}");
        assert!(!r.contains("ip daddr {"), "{r}");
        net.allow_host_access = true;
        net.allow_networks = vec![Ipv4Cidr::new("10.1.0.0".parse().unwrap(), 16).unwrap()];
        let r = ruleset("wt", &net);
        let input = &r[..r.find("chain forward").unwrap()];
        assert!(!input.contains("reject"), "{r}");
        assert!(
            r.contains("ip saddr 10.254.0.0/24 ip daddr { 10.1.0.0/16 } accept"),
            "{r}"
        );
    }
}
