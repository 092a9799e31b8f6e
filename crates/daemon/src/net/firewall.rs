//! The daemon's packet filter: one nftables table of its own (`network.nftables_table`), so
//! several daemons share a host and nothing else's rules are touched. It gives the original's
//! defaults (SPEC 3.6): a container may not reach the host (unless `allow_host_access`) nor
//! any other network, other containers included (unless `allow_networks` lists it); replies
//! to connections it may make are let through; nothing from outside reaches a container.
//!
//! net_out: each container has a chain `c<id>` of accept rules, reached from the forward
//! chain through the verdict map `out_chains` (container ip → `jump c<id>`); a chain that does
//! not accept falls back to the default reject. net_in: the map `in_ports` (host port →
//! container ip . container port) is applied by DNAT in the nat prerouting and output chains
//! to tcp sent to any local address of the host but loopback (127.0.0.0/8 is not forwarded).
//! What a container sends past the pool leaves with the host's address (masquerade in the nat
//! postrouting chain, the original's `warden-postrouting`), so the replies find their way back.
//!
//! Every change is one transaction: the table at startup (replacing any previous version) and
//! a recovered container's rules as nft commands run in process by libnftables (see
//! `net::nftables`); each net_in and net_out and a container's removal as a netlink batch
//! built by `net::nfbatch`, whose cost does not grow with the table (libnftables reads every
//! chain of the host back before such a change). The table is kept when the daemon stops: the
//! containers, which outlive it, stay fenced.

use super::nfbatch::{self, Batch, Data, Key};
use super::nftables::{self, NftError};
use crate::config::{Ipv4Cidr, NetworkConfig};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("{0}")]
    Load(NftError),
    #[error("nftables refused the {table} rules: {error}")]
    Rejected { table: String, error: String },
    /// net_in with a host port that already has a mapping (SPEC 3.6: one per port).
    #[error("host port {0} is already forwarded by a net_in")]
    PortInUse(u16),
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
    // net_in: DNAT'ed connections from outside the pool reach their container.
    forward.push(format!(
        "ip saddr != {pool} ct status dnat ip daddr {pool} accept"
    ));
    // net_out: each container's own chain, by its address; no accept falls through.
    forward.push("ip saddr vmap @out_chains".to_string());
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
    let dnat = "fib daddr type local ip daddr != 127.0.0.0/8 dnat ip to tcp dport map @in_ports";
    format!(
        "add table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n{MAPS}{}{}  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    {dnat}\n  }}\n  chain output {{\n    type nat hook output priority -100; policy accept;\n    {dnat}\n  }}\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {pool} ip daddr != {pool} masquerade\n  }}\n}}\n",
        chain("input", "input", &input),
        chain("forward", "forward", &forward),
    )
}

const MAPS: &str = "  map out_chains {\n    type ipv4_addr : verdict;\n  }\n  map in_ports {\n    type inet_service : ipv4_addr . inet_service;\n  }\n";

/// Runs `script` as one transaction; what it prints.
fn nft(script: &str, table: &str) -> Result<String, FirewallError> {
    nftables::run(script).map_err(|e| match e {
        NftError::Rejected(error) => FirewallError::Rejected {
            table: table.to_string(),
            error,
        },
        e => FirewallError::Load(e),
    })
}

/// Installs (or replaces) the daemon's table.
pub fn install(table: &str, net: &NetworkConfig) -> Result<(), FirewallError> {
    nft(&ruleset(table, net), table).map(drop)
}

/// Another wardend's table (one with our maps `out_chains` and `in_ports`) whose pool
/// overlaps `pool`: its name and its pool. Its forward chain would reject what our containers
/// send (every base chain on the hook sees each packet, and a reject in any drops it), so
/// net_out would silently fail; the daemon refuses to start instead.
pub fn foreign_overlapping_table(
    table: &str,
    pool: Ipv4Cidr,
) -> Result<Option<(String, Ipv4Cidr)>, FirewallError> {
    let text = nft("list ruleset ip\n", table)?;
    Ok(overlapping_in(&text, table, pool))
}

/// [`foreign_overlapping_table`] on the text of `list ruleset ip`.
fn overlapping_in(ruleset: &str, ours: &str, pool: Ipv4Cidr) -> Option<(String, Ipv4Cidr)> {
    let overlaps = |p: Ipv4Cidr| pool.contains(p.addr()) || p.contains(pool.addr());
    let (mut name, mut is_warden, mut their_pool) = (None::<String>, false, None);
    for line in ruleset.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("table ip ") {
            name = rest.strip_suffix(" {").map(str::to_string);
            is_warden = false;
            their_pool = None;
        } else if line == "map out_chains {" {
            is_warden = true;
        } else if let Some(rest) = line.strip_prefix("ip saddr ") {
            // The postrouting rule: `ip saddr P ip daddr != P masquerade`.
            if let Some((p, tail)) = rest.split_once(' ') {
                if tail.ends_with("masquerade") {
                    their_pool = p.parse::<Ipv4Cidr>().ok().or_else(|| {
                        p.parse::<std::net::Ipv4Addr>()
                            .ok()
                            .and_then(|a| Ipv4Cidr::new(a, 32).ok())
                    });
                }
            }
        }
        if let (Some(n), true, Some(p)) = (&name, is_warden, their_pool) {
            if n != ours && overlaps(p) {
                return Some((n.clone(), p));
            }
        }
    }
    None
}

/// Removes the daemon's table; fine if it is not there.
pub fn remove(table: &str) -> Result<(), FirewallError> {
    nft(
        &format!("add table ip {table}\ndelete table ip {table}\n"),
        table,
    )
    .map(drop)
}

/// One net_out entry (SPEC 3.6), checked; kept in the snapshot and rendered as an nft rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetOut {
    /// `a.b.c.d`, `a.b.c.d/n` or `a.b.c.d-e.f.g.h`, as nft takes it.
    pub network: Option<String>,
    /// `p` or `a-b`.
    pub ports: Option<String>,
    /// tcp, udp, icmp or all.
    pub protocol: String,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub log: bool,
}

impl NetOut {
    /// Checks a request; the errors are the protocol's (SPEC 4) where it has one.
    pub fn from_request(r: &warden_protocol::NetOutRequest) -> Result<NetOut, String> {
        if r.network.is_none() && r.port.is_none() && r.port_range.is_none() {
            return Err("Please specify network, port, and/or port_range.".into());
        }
        let ports = match (&r.port_range, r.port) {
            (Some(range), _) => Some(range.clone()),
            (None, Some(p)) => Some(p.to_string()),
            (None, None) => None,
        };
        let ports = match ports {
            None => None,
            Some(p) => {
                let port = |s: &str| {
                    s.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|&v| v != 0)
                        .ok_or_else(|| format!("Invalid port: {s}"))
                };
                if let Some((a, b)) = p.split_once(':') {
                    let (a, b) = (port(a)?, port(b)?);
                    if a >= b {
                        return Err("Port range maximum must be greater than minimum".into());
                    }
                    Some(format!("{a}-{b}"))
                } else {
                    Some(port(&p)?.to_string())
                }
            }
        };
        let protocol = match r.protocol.unwrap_or(0) {
            0 => "tcp",
            1 => "udp",
            2 => "icmp",
            3 => "all",
            n => return Err(format!("Invalid protocol: {n}")),
        };
        if ports.is_some() && !matches!(protocol, "tcp" | "udp") {
            return Err("Ports can only be given for TCP and UDP".into());
        }
        let network = match &r.network {
            None => None,
            Some(n) => Some(parse_network(n).ok_or_else(|| format!("Invalid network: {n}"))?),
        };
        let icmp = |v: Option<i32>, what: &str| -> Result<Option<u8>, String> {
            match v {
                None | Some(-1) => Ok(None),
                Some(v) => u8::try_from(v)
                    .map(Some)
                    .map_err(|_| format!("Invalid ICMP {what}: {v}")),
            }
        };
        let (icmp_type, icmp_code) = if protocol == "icmp" {
            let t = icmp(r.icmp_type, "type")?;
            (
                t,
                if t.is_some() {
                    icmp(r.icmp_code, "code")?
                } else {
                    None
                },
            )
        } else {
            (None, None)
        };
        Ok(NetOut {
            network,
            ports,
            protocol: protocol.into(),
            icmp_type,
            icmp_code,
            log: r.log.unwrap_or(false),
        })
    }

    /// The rule as nf_tables expressions: what nft makes of [`NetOut::rule`].
    pub fn exprs(&self, id: &str) -> Vec<nfbatch::Expr> {
        use nfbatch::Expr;
        use std::net::Ipv4Addr;
        let mut e = Vec::new();
        if let Some(n) = &self.network {
            e.push(Expr::Payload {
                transport: false,
                offset: 16,
                len: 4,
            });
            let addr = |s: &str| {
                s.parse::<Ipv4Addr>()
                    .map_or(vec![0; 4], |a| a.octets().to_vec())
            };
            if let Some((a, b)) = n.split_once('-') {
                e.push(Expr::Range(addr(a), addr(b)));
            } else if let Some((a, p)) = n.split_once('/') {
                let p: u32 = p.parse().unwrap_or(32);
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                e.push(Expr::Mask(mask.to_be_bytes().to_vec()));
                e.push(Expr::Equals(addr(a)));
            } else {
                e.push(Expr::Equals(addr(n)));
            }
        }
        let proto = match self.protocol.as_str() {
            "tcp" => Some(6u8),
            "udp" => Some(17),
            "icmp" => Some(1),
            _ => None,
        };
        if let Some(p) = proto {
            e.push(Expr::L4Proto);
            e.push(Expr::Equals(vec![p]));
        }
        let transport = |offset, len| Expr::Payload {
            transport: true,
            offset,
            len,
        };
        if let (Some(_), Some(ports)) = (proto, &self.ports) {
            let port = |s: &str| s.parse::<u16>().unwrap_or(0).to_be_bytes().to_vec();
            e.push(transport(2, 2));
            e.push(match ports.split_once('-') {
                Some((a, b)) => Expr::Range(port(a), port(b)),
                None => Expr::Equals(port(ports)),
            });
        }
        if let Some(t) = self.icmp_type {
            e.push(transport(0, 1));
            e.push(Expr::Equals(vec![t]));
            if let Some(c) = self.icmp_code {
                e.push(transport(1, 1));
                e.push(Expr::Equals(vec![c]));
            }
        }
        if self.log {
            e.push(Expr::Log(format!("warden-c{id} ")));
        }
        e.push(Expr::Accept);
        e
    }

    /// The nft rule (for chain `c<id>`).
    pub fn rule(&self, id: &str) -> String {
        let mut r = Vec::new();
        if let Some(n) = &self.network {
            r.push(format!("ip daddr {n}"));
        }
        match (self.protocol.as_str(), &self.ports) {
            ("all", _) => {}
            (p @ ("tcp" | "udp"), Some(ports)) => r.push(format!("{p} dport {ports}")),
            (p, _) => r.push(format!("meta l4proto {p}")),
        }
        if let Some(t) = self.icmp_type {
            r.push(format!("icmp type {t}"));
            if let Some(c) = self.icmp_code {
                r.push(format!("icmp code {c}"));
            }
        }
        if self.log {
            r.push(format!("log prefix \"warden-c{id} \""));
        }
        r.push("accept".into());
        r.join(" ")
    }
}

/// `a.b.c.d`, `a.b.c.d/n` (host bits cleared) or `a.b.c.d-e.f.g.h` (a ≤ b).
fn parse_network(n: &str) -> Option<String> {
    use std::net::Ipv4Addr;
    let n = n.trim();
    if let Some((a, b)) = n.split_once('-') {
        let (a, b): (Ipv4Addr, Ipv4Addr) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        return (a <= b).then(|| format!("{a}-{b}"));
    }
    if let Some((a, p)) = n.split_once('/') {
        let a: Ipv4Addr = a.parse().ok()?;
        let p: u32 = p.parse().ok().filter(|&p| p <= 32)?;
        let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
        return Some(format!("{}/{p}", Ipv4Addr::from(u32::from(a) & mask)));
    }
    n.parse::<Ipv4Addr>().ok().map(|a| a.to_string())
}

/// Adds a net_in mapping: tcp to a local address at `host_port` → `ip:container_port`. A
/// host port already mapped (to any container, even this one) is refused.
pub fn net_in(
    table: &str,
    host_port: u16,
    ip: std::net::Ipv4Addr,
    container_port: u16,
) -> Result<(), FirewallError> {
    // `create`, not `add`: an existing key is an error even with the same value. A batch of
    // our own, not libnftables: its cache re-reads every chain of the host before an element
    // change (`net::nfbatch`).
    let mut batch = Batch::new(table);
    batch.add_element(
        "in_ports",
        Key::Port(host_port),
        Data::AddrPort(ip, container_port),
        true,
    );
    match batch.commit() {
        Ok(()) => Ok(()),
        Err(e) if e.errno == libc::EEXIST => Err(FirewallError::PortInUse(host_port)),
        Err(e) => Err(rejected(table, e)),
    }
}

fn rejected(table: &str, e: nfbatch::BatchError) -> FirewallError {
    FirewallError::Rejected {
        table: table.to_string(),
        error: e.to_string(),
    }
}

fn container_chain(table: &str, id: &str, ip: std::net::Ipv4Addr) -> String {
    format!(
        "add chain ip {table} c{id}\nadd element ip {table} out_chains {{ {ip} : jump c{id} }}\n"
    )
}

/// Inserts a net_out rule at the top of the container's chain (made if need be).
pub fn net_out(
    table: &str,
    id: &str,
    ip: std::net::Ipv4Addr,
    rule: &NetOut,
) -> Result<(), FirewallError> {
    // A batch of our own (see net_in).
    let chain = format!("c{id}");
    let mut batch = Batch::new(table);
    batch
        .add_chain(&chain)
        .add_element("out_chains", Key::Addr(ip), Data::Jump(&chain), false)
        .insert_rule(&chain, &rule.exprs(id), &rule.rule(id));
    batch.commit().map_err(|e| rejected(table, e))
}

/// Puts a recovered container's net_in and net_out back (one transaction), in their order.
pub fn restore(
    table: &str,
    id: &str,
    ip: std::net::Ipv4Addr,
    net_in: &[(u16, u16)],
    net_out: &[NetOut],
) -> Result<(), FirewallError> {
    if net_in.is_empty() && net_out.is_empty() {
        return Ok(());
    }
    let mut s = String::new();
    for (h, c) in net_in {
        s += &format!("add element ip {table} in_ports {{ {h} : {ip} . {c} }}\n");
    }
    if !net_out.is_empty() {
        s += &container_chain(table, id, ip);
        for r in net_out {
            s += &format!("insert rule ip {table} c{id} {}\n", r.rule(id));
        }
    }
    nft(&s, table).map(drop)
}

/// A container's removal as one transaction: its `out_chains` element, its chain and its
/// `in_ports` elements. With `destroy`, what is not there is skipped (Linux 6.3+); without,
/// each is added first so that its delete cannot fail (an add of what is there changes
/// nothing), as the kernels before have no such delete.
fn removal(
    table: &str,
    id: &str,
    ip: std::net::Ipv4Addr,
    net_in: &[(u16, u16)],
    destroy: bool,
) -> Result<(), nfbatch::BatchError> {
    let chain = format!("c{id}");
    let mut batch = Batch::new(table);
    if !destroy {
        batch
            .add_chain(&chain)
            .add_element("out_chains", Key::Addr(ip), Data::Jump(&chain), false);
    }
    batch
        .delete_element("out_chains", Key::Addr(ip), destroy)
        .delete_chain(&chain, destroy);
    for (h, c) in net_in {
        if !destroy {
            batch.add_element("in_ports", Key::Port(*h), Data::AddrPort(ip, *c), false);
        }
        batch.delete_element("in_ports", Key::Port(*h), destroy);
    }
    batch.commit()
}

/// Removes the container's chain, map elements and port mappings, whatever of them is
/// already gone (or the whole table).
pub fn remove_container(
    table: &str,
    id: &str,
    ip: std::net::Ipv4Addr,
    net_in: &[(u16, u16)],
) -> Result<(), FirewallError> {
    // Batches of our own (see net_in): with the deletes of Linux 6.3+ that are no error for
    // what is not there, else (older kernels) with each object added first.
    let Err(first) = removal(table, id, ip, net_in, true)
        .or_else(|_| removal(table, id, ip, net_in, false))
        .map_err(|e| rejected(table, e))
    else {
        return Ok(());
    };
    // Something did not match (the table is gone, an element differs): piece by piece.
    let mut pieces = vec![
        format!("delete element ip {table} out_chains {{ {ip} }}\n"),
        format!("delete chain ip {table} c{id}\n"),
    ];
    for (h, _) in net_in {
        pieces.push(format!("delete element ip {table} in_ports {{ {h} }}\n"));
    }
    for p in pieces {
        let _ = nft(&p, table);
    }
    let text = match nft(&format!("list table ip {table}\n"), table) {
        Ok(text) => text,
        // No table: nothing of the container's either.
        Err(FirewallError::Rejected { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let (ip, chain) = (ip.to_string(), format!("c{id}"));
    let left = text
        .split(|ch: char| ch.is_whitespace() || matches!(ch, '{' | '}' | ',' | ':' | ';' | '@'))
        .any(|t| t == ip || t == chain);
    if left {
        Err(first)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn another_wardends_table_is_found_by_its_maps_and_pool() {
        let ruleset = "table ip warden {\n\tmap out_chains {\n\t\ttype ipv4_addr : verdict\n\t}\n\
            \tchain postrouting {\n\t\tip saddr 10.254.0.0/24 ip daddr != 10.254.0.0/24 masquerade\n\t}\n}\n\
            table ip nat {\n\tchain postrouting {\n\t\tip saddr 10.1.0.0/16 ip daddr != 10.1.0.0/16 masquerade\n\t}\n}\n\
            table ip mine {\n\tmap out_chains {\n\t}\n\tchain postrouting {\n\t\tip saddr 10.2.0.0/24 ip daddr != 10.2.0.0/24 masquerade\n\t}\n}\n";
        let cidr = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
        // Inside, around and beside the other daemon's pool.
        assert_eq!(
            overlapping_in(ruleset, "mine", cidr("10.254.0.0/26")),
            Some(("warden".to_string(), cidr("10.254.0.0/24")))
        );
        assert!(overlapping_in(ruleset, "mine", cidr("10.254.0.0/16")).is_some());
        assert_eq!(overlapping_in(ruleset, "mine", cidr("10.254.1.0/24")), None);
        // Not a wardend's table (no out_chains map), and our own table, are no conflict.
        assert_eq!(overlapping_in(ruleset, "mine", cidr("10.1.2.0/24")), None);
        assert_eq!(
            overlapping_in(ruleset, "warden", cidr("10.254.0.0/24")),
            None
        );
        assert_eq!(overlapping_in(ruleset, "mine", cidr("10.2.0.0/24")), None);
    }

    use super::*;

    /// The network section of the default config.
    pub(super) fn default_network() -> NetworkConfig {
        crate::config::Config::resolve(
            &Default::default(),
            crate::config::Host {
                ephemeral_port_top: 60999,
            },
        )
        .unwrap()
        .network
    }

    #[test]
    fn ruleset_follows_the_config() {
        let mut net = default_network();
        let r = ruleset("wt", &net);
        assert!(
            r.starts_with("add table ip wt\ndelete table ip wt\ntable ip wt {\n"),
            "{r}"
        );
        assert!(r.contains("ip saddr 10.254.0.0/24 reject with icmp type admin-prohibited\n  }\n  chain forward"), "{r}");
        assert!(!r.contains("ip daddr {"), "{r}");
        assert!(
            r.contains("type nat hook postrouting priority srcnat; policy accept;\n    ip saddr 10.254.0.0/24 ip daddr != 10.254.0.0/24 masquerade\n"),
            "{r}"
        );
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

    #[test]
    fn net_out_requests_become_rules() {
        let req = |f: &dyn Fn(&mut warden_protocol::NetOutRequest)| {
            let mut r = warden_protocol::NetOutRequest::default();
            f(&mut r);
            NetOut::from_request(&r).map(|n| n.rule("abc"))
        };
        assert_eq!(
            req(&|_| {}).unwrap_err(),
            "Please specify network, port, and/or port_range."
        );
        assert_eq!(
            req(&|r| r.port_range = Some("5:5".into())).unwrap_err(),
            "Port range maximum must be greater than minimum"
        );
        assert_eq!(req(&|r| r.port = Some(80)).unwrap(), "tcp dport 80 accept");
        assert_eq!(
            req(&|r| {
                r.network = Some("10.1.2.3/16".into());
                r.port_range = Some("1:9".into());
                r.protocol = Some(1);
                r.log = Some(true);
            })
            .unwrap(),
            "ip daddr 10.1.0.0/16 udp dport 1-9 log prefix \"warden-cabc \" accept"
        );
        assert_eq!(
            req(&|r| {
                r.network = Some("10.0.0.1-10.0.0.9".into());
                r.protocol = Some(2);
                r.icmp_type = Some(8);
                r.icmp_code = Some(-1);
            })
            .unwrap(),
            "ip daddr 10.0.0.1-10.0.0.9 meta l4proto icmp icmp type 8 accept"
        );
        assert_eq!(
            req(&|r| {
                r.network = Some("10.0.0.1".into());
                r.protocol = Some(3);
            })
            .unwrap(),
            "ip daddr 10.0.0.1 accept"
        );
        assert!(req(&|r| r.network = Some("10.0.0.1; flush ruleset".into())).is_err());
        assert!(req(&|r| {
            r.port = Some(80);
            r.protocol = Some(2);
        })
        .is_err());
    }
}

#[cfg(test)]
mod changes {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    /// A table of the test's own, removed however the test ends.
    struct Table(String);
    impl Drop for Table {
        fn drop(&mut self) {
            let _ = remove(&self.0);
        }
    }

    /// Table `w<kind>_<pid>`, installed with the pool `a.b.c.0/len` (one that no other test
    /// uses).
    fn installed(kind: &str, [a, b, c]: [u8; 3], len: u8) -> Table {
        let name = format!("w{kind}_{}", std::process::id());
        let pool = Ipv4Cidr::new(Ipv4Addr::new(a, b, c, 0), len).unwrap();
        let mut net = super::tests::default_network();
        net.pool_network = pool;
        let t = Table(name);
        install(&t.0, &net).unwrap();
        t
    }

    fn tcp_443(network: Option<&str>) -> NetOut {
        NetOut {
            network: network.map(str::to_string),
            ports: Some("443".into()),
            protocol: "tcp".into(),
            icmp_type: None,
            icmp_code: None,
            log: false,
        }
    }

    fn runs() -> usize {
        nftables::RUNS.with(|r| r.get())
    }

    #[test]
    fn net_in_and_removal_are_batches_of_their_own_not_librarys() {
        // 100.127.0.0/24: the scale harness below takes 100.64-126.
        let t = installed("chg", [100, 127, 0], 24);
        let table = &t.0;
        let (a, b) = (Ipv4Addr::new(100, 127, 0, 2), Ipv4Addr::new(100, 127, 0, 3));
        let rule = tcp_443(None);
        let before = runs();
        net_out(table, "a1", a, &rule).unwrap();
        assert_eq!(runs(), before, "net_out went through libnftables");
        let listed = || nftables::run(&format!("list table ip {table}\n")).unwrap();

        // Neither net_in nor a removal runs a command through libnftables: its cache reads
        // every chain of the host back before each of them.
        let before = runs();
        net_in(table, 40001, a, 80).unwrap();
        net_in(table, 40002, b, 8080).unwrap();
        assert!(matches!(
            net_in(table, 40001, b, 81),
            Err(FirewallError::PortInUse(40001))
        ));
        // Even with the same value.
        assert!(matches!(
            net_in(table, 40002, b, 8080),
            Err(FirewallError::PortInUse(40002))
        ));
        assert_eq!(runs(), before, "net_in went through libnftables");
        let text = listed();
        assert!(text.contains("40001 : 100.127.0.2 . 80"), "{text}");
        assert!(text.contains("40002 : 100.127.0.3 . 8080"), "{text}");
        assert!(text.contains("100.127.0.2 : jump ca1"), "{text}");

        // a has a chain and a net_in; b only a net_in (no chain, no out_chains element).
        let before = runs();
        remove_container(table, "a1", a, &[(40001, 80)]).unwrap();
        remove_container(table, "b1", b, &[(40002, 8080)]).unwrap();
        assert_eq!(runs(), before, "a removal went through libnftables");
        let text = listed();
        for gone in ["40001", "40002", "ca1", "100.127.0.2"] {
            assert!(!text.contains(gone), "{gone} left: {text}");
        }
        // Again: nothing left to remove is no error.
        remove_container(table, "a1", a, &[(40001, 80)]).unwrap();
        // The same without the deletes of Linux 6.3+ (the way on older kernels).
        net_out(table, "a1", a, &rule).unwrap();
        net_in(table, 40001, a, 80).unwrap();
        removal(table, "a1", a, &[(40001, 80)], false).unwrap();
        removal(table, "b1", b, &[(40002, 8080)], false).unwrap();
        let text = listed();
        for gone in ["40001", "ca1", "100.127.0.2"] {
            assert!(!text.contains(gone), "{gone} left: {text}");
        }

        // The error of a change the kernel refuses names it.
        remove(table).unwrap();
        let e = net_in(table, 40003, a, 80).unwrap_err().to_string();
        assert!(
            e.contains(&format!("create element ip {table} in_ports {{ 40003 : 100.127.0.2 . 80 }}: No such file or directory")),
            "{e}"
        );
        // And a removal from a table that is gone is no error.
        remove_container(table, "a1", a, &[(40001, 80)]).unwrap();
    }

    fn env(name: &str, default: usize) -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn p50(mut v: Vec<Duration>) -> f64 {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1e3
    }

    #[test]
    fn net_out_rules_are_what_nft_makes_of_their_text() {
        // 100.127.1.0/24: see the test above.
        let t = installed("rule", [100, 127, 1], 24);
        let table = &t.0;
        let req = |f: &dyn Fn(&mut warden_protocol::NetOutRequest)| {
            let mut r = warden_protocol::NetOutRequest::default();
            f(&mut r);
            NetOut::from_request(&r).unwrap()
        };
        let rules = [
            req(&|r| r.port = Some(80)),
            req(&|r| {
                r.network = Some("10.1.2.3/16".into());
                r.port_range = Some("1:9".into());
                r.protocol = Some(1);
                r.log = Some(true);
            }),
            req(&|r| {
                r.network = Some("10.0.0.1-10.0.0.9".into());
                r.protocol = Some(2);
                r.icmp_type = Some(8);
            }),
            req(&|r| {
                r.network = Some("10.0.0.0/8".into());
                r.protocol = Some(2);
                r.icmp_type = Some(3);
                r.icmp_code = Some(1);
            }),
            req(&|r| {
                r.network = Some("10.0.0.1".into());
                r.protocol = Some(3);
            }),
            req(&|r| {
                r.network = Some("10.0.0.1/32".into());
                r.protocol = Some(1);
            }),
            req(&|r| {
                r.network = Some("0.0.0.0/0".into());
                r.protocol = Some(2);
            }),
        ];
        let body = |chain: &str| {
            let text = nftables::run(&format!("list chain ip {table} {chain}\n")).unwrap();
            text.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with("chain") && !l.starts_with("table") && *l != "}")
                .map(|l| l.replace(&format!("warden-{chain}"), "warden-c"))
                .collect::<Vec<_>>()
        };
        for (i, rule) in rules.iter().enumerate() {
            let (ours, theirs) = (format!("r{i}"), format!("t{i}"));
            net_out(table, &ours, Ipv4Addr::new(100, 127, 1, i as u8 + 2), rule).unwrap();
            nftables::run(&format!(
                "add chain ip {table} c{theirs}\ninsert rule ip {table} c{theirs} {}\n",
                rule.rule(&theirs)
            ))
            .unwrap();
            let ours_listed = body(&format!("c{ours}"));
            assert_eq!(ours_listed.len(), 1, "{ours_listed:?}");
            assert_eq!(
                ours_listed,
                body(&format!("c{theirs}")),
                "{}",
                rule.rule(&ours)
            );
        }
        // A second rule goes on top, as `insert` does.
        net_out(table, "r0", Ipv4Addr::new(100, 127, 1, 2), &rules[4]).unwrap();
        assert_eq!(body("cr0")[0], "ip daddr 10.0.0.1 accept");
    }

    /// The cost of a change with 10 and with many containers' worth of chains and elements in the
    /// table (docs/daemon.md, "Scale"). Root; its own table, removed on exit.
    ///
    ///     WARDEN_NFT_SCALE=1000 WARDEN_NFT_RUNS=50 cargo test -p warden-daemon --lib \
    ///         net::firewall::changes::scale -- --ignored --nocapture
    #[test]
    #[ignore = "root; a measurement, not a check"]
    fn scale() {
        let (n, runs) = (env("WARDEN_NFT_SCALE", 1000), env("WARDEN_NFT_RUNS", 50));
        let pid = std::process::id();
        let second = 64 + (pid % 63) as u8;
        let t = installed("scale", [100, second, 0], 16);
        let table = &t.0;
        let ip = |i: usize| Ipv4Addr::new(100, second, (i / 250) as u8, (i % 250 + 1) as u8);
        let rule = tcp_443(Some("10.98.0.0/24"));
        let mut have = 0;
        for level in [10, n] {
            while have < level {
                let (mut s, upto) = (String::new(), level.min(have + 250));
                for i in have..upto {
                    s += &container_chain(table, &i.to_string(), ip(i));
                    s += &format!("add rule ip {table} c{i} {}\n", rule.rule("x"));
                    s += &format!(
                        "add element ip {table} in_ports {{ {} : {} . 8080 }}\n",
                        20000 + i,
                        ip(i)
                    );
                }
                nftables::run(&s).unwrap();
                have = upto;
            }
            let (mut ins, mut outs, mut rms, mut bare) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for j in 0..runs {
                let (id, a, port) = (format!("h{j}"), ip(n + 250 + j), 40000 + j as u16);
                let t0 = Instant::now();
                net_in(table, port, a, 80).unwrap();
                let t1 = Instant::now();
                net_out(table, &id, a, &rule).unwrap();
                let t2 = Instant::now();
                remove_container(table, &id, a, &[(port, 80)]).unwrap();
                let t3 = Instant::now();
                // The kernel's part of a net_out alone: the chain and the jump to it (which
                // makes the kernel validate every jump of the table at commit).
                let chain = format!("c{id}");
                let mut b = Batch::new(table);
                b.add_chain(&chain).add_element(
                    "out_chains",
                    Key::Addr(a),
                    Data::Jump(&chain),
                    false,
                );
                b.commit().unwrap();
                let t4 = Instant::now();
                removal(table, &id, a, &[], true).unwrap();
                bare.push(t4 - t3);
                ins.push(t1 - t0);
                outs.push(t2 - t1);
                rms.push(t3 - t2);
            }
            println!(
                "containers {level:5}: p50 net_in {:.3} ms, net_out {:.3} ms, remove_container {:.3} ms, chain + jump element {:.3} ms",
                p50(ins),
                p50(outs),
                p50(rms),
                p50(bare)
            );
        }
    }
}
