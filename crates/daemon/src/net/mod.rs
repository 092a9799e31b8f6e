//! Container networking: the persistent network namespace and the veth pair of each container
//! (SPEC 3.4, 5: what wshd's hook-parent-after-clone and hook-child-after-pivot did with `ip`).
//!
//! Per container, [`setup`] makes:
//! - a network namespace kept in a file (`<container dir>/netns`, see [`netns`]) that the OCI
//!   runtime joins by path (`linux.namespaces: [{type: network, path: <file>}]`), with `lo` up;
//! - a veth pair: `<prefix><id>-0` in the host namespace with `host_ip/30`, and `<prefix><id>-1`
//!   created directly inside the container's namespace with `container_ip/30`, both with the
//!   configured MTU and up;
//! - inside, a default route via `host_ip`.
//!
//! Everything goes through netlink in-process (rtnetlink): one socket in the host namespace and
//! one opened inside the new namespace by the thread that created it, so no thread of the
//! daemon ever switches namespace and no `ip` is forked. The host side and the container side
//! are configured concurrently.
//!
//! [`setup`] either does all of it or, on any failure, undoes what it did and returns an error
//! naming the step and the interface. [`teardown`] unmounts and removes the namespace file,
//! then deletes the host side (which deletes the pair); it is idempotent (anything already gone
//! is fine) and runs every step even if one fails.
//!
//! Neither is cancel-safe: a dropped [`setup`] future may leave a part behind, which
//! [`teardown`] removes (as a failed create's undo does anyway).
//!
//! Filtering and NAT are not here (the firewall's job), nor forwarding (the host's): host <->
//! container traffic over the veth needs none of them.

pub mod bandwidth;
pub mod firewall;
pub mod host;
pub mod netns;
mod nfbatch;
mod nftables;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::pool::Network;

/// The interface prefix when the config names none: `w-<id>-0`, as the original.
pub const DEFAULT_PREFIX: &str = "w-";

/// The longest Linux interface name (`IFNAMSIZ` - 1).
pub const MAX_IFNAME: usize = 15;

/// The loopback device's index, the same in every network namespace.
const LOOPBACK_INDEX: u32 = 1;

/// The host side's name: `<prefix><id>-0`.
pub fn host_iface(prefix: &str, id: &str) -> String {
    iface(prefix, id, 0)
}

/// The container side's name: `<prefix><id>-1`.
pub fn container_iface(prefix: &str, id: &str) -> String {
    iface(prefix, id, 1)
}

/// `<prefix><id>-<n>`: 0 host side, 1 container side, 2 the ifb of limit_bandwidth.
pub fn iface(prefix: &str, id: &str, n: u8) -> String {
    format!("{prefix}{id}-{n}")
}

/// What one container's network looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// The container_id (SPEC 3.2: 11 characters).
    pub id: String,
    /// The interface prefix ([`DEFAULT_PREFIX`], or a test's own).
    pub prefix: String,
    pub host_ip: Ipv4Addr,
    pub container_ip: Ipv4Addr,
    /// 30 for a pool network.
    pub prefix_len: u8,
    /// `network.mtu`, for both ends.
    pub mtu: u32,
}

impl NetSpec {
    /// The spec for a pool network: host net+1, container net+2, /30.
    pub fn new(id: &str, prefix: &str, network: Network, mtu: u32) -> NetSpec {
        NetSpec {
            id: id.to_owned(),
            prefix: prefix.to_owned(),
            host_ip: network.host_ip(),
            container_ip: network.container_ip(),
            prefix_len: network.prefix_len(),
            mtu,
        }
    }

    /// `<prefix><id>-0`.
    pub fn host_iface(&self) -> String {
        host_iface(&self.prefix, &self.id)
    }

    /// `<prefix><id>-1`.
    pub fn container_iface(&self) -> String {
        container_iface(&self.prefix, &self.id)
    }

    /// Checks what the kernel would refuse late or confusingly: names (at most 15 bytes, no
    /// `/`, `:` or whitespace), the prefix length and the MTU.
    pub fn validate(&self) -> Result<(), NetError> {
        for name in [self.host_iface(), self.container_iface()] {
            check_ifname(&name).map_err(NetError::Invalid)?;
        }
        if self.prefix_len == 0 || self.prefix_len > 32 {
            return Err(NetError::Invalid(format!(
                "prefix length {} is not from 1 to 32",
                self.prefix_len
            )));
        }
        if !(68..=65535).contains(&self.mtu) {
            return Err(NetError::Invalid(format!(
                "MTU {} is not from 68 to 65535",
                self.mtu
            )));
        }
        Ok(())
    }
}

fn check_ifname(name: &str) -> Result<(), String> {
    if name.len() > MAX_IFNAME {
        return Err(format!(
            "interface name {name:?} is {} bytes, over Linux's {MAX_IFNAME} (shorten the prefix or the id)",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Err(format!("interface name {name:?} holds {c:?}"));
    }
    Ok(())
}

/// Why networking could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The spec is unusable; nothing was done.
    #[error("network setup: {0}")]
    Invalid(String),
    /// A step failed: `step` says what, on which interface or path.
    #[error("{step}: {source}")]
    Step {
        step: String,
        #[source]
        source: io::Error,
    },
    /// Teardown: every step that failed (the others were still done).
    #[error("{}", join(.0))]
    Several(Vec<NetError>),
}

fn join(errors: &[NetError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl NetError {
    /// The OS error of a failed step (`EEXIST` for a name taken, ...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetError::Step { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

pub(crate) fn step(what: impl fmt::Display) -> impl FnOnce(io::Error) -> NetError {
    move |source| NetError::Step {
        step: what.to_string(),
        source,
    }
}

/// rtnetlink's error as the OS error it carries.
fn nl_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

/// A rtnetlink handle over `socket` (already open in the namespace it is to act in), its
/// connection driven by a task of its own that ends when the handle is dropped.
fn connect(socket: rtnetlink::sys::Socket) -> io::Result<Handle> {
    socket.set_non_blocking(true)?;
    // SAFETY: the fd is a netlink socket we own; TokioSocket takes ownership of it.
    let socket = unsafe { rtnetlink::sys::TokioSocket::from_raw_fd(socket.into_raw_fd()) };
    let (conn, handle, _) = rtnetlink::from_socket(socket);
    tokio::spawn(conn);
    Ok(handle)
}

/// A connection in the calling thread's namespace, i.e. the host's.
fn connect_host() -> io::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn link_index(handle: &Handle, name: &str) -> io::Result<u32> {
    let link = handle
        .link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await
        .map_err(nl_io)?;
    link.map(|l| l.header.index)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
}

/// Deletes the link named `name`; false if there was none.
async fn delete_link(handle: &Handle, name: &str) -> io::Result<bool> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    match handle.link().del_with_message(msg).execute().await {
        Ok(()) => Ok(true),
        Err(e) => {
            let e = nl_io(e);
            if e.raw_os_error() == Some(libc::ENODEV) {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Creates the container's network namespace at `netns_path` (which must not exist; its
/// directory must) and its veth pair, addresses and default route. On failure everything this
/// call made is removed again (never anything it did not make: a name or file already taken
/// fails the step and is left alone).
pub async fn setup(netns_path: &Path, spec: &NetSpec) -> Result<(), NetError> {
    spec.validate()?;
    let created_veth = AtomicBool::new(false);
    let ns = netns::create(netns_path).await?;
    let host = connect_host().map_err(step("open a netlink socket"));
    let result = match host {
        Ok(host) => configure(&host, ns, netns_path, spec, &created_veth).await,
        Err(e) => Err(e),
    };
    let Err(err) = result else {
        return Ok(());
    };
    // Undo, in teardown's order: the namespace goes with its file, and deleting the host side
    // deletes the pair.
    if let Err(e) = netns::destroy(netns_path) {
        tracing::warn!(path = %netns_path.display(), error = %e, "undoing a failed network setup: netns removal failed");
    }
    if created_veth.load(Ordering::SeqCst) {
        let undo = match connect_host() {
            Ok(h) => delete_link(&h, &spec.host_iface()).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = undo {
            tracing::warn!(iface = %spec.host_iface(), error = %e, "undoing a failed network setup: delete failed");
        }
    }
    Err(err)
}

async fn configure(
    host: &Handle,
    ns: netns::NewNetns,
    netns_path: &Path,
    spec: &NetSpec,
    created_veth: &AtomicBool,
) -> Result<(), NetError> {
    let inside = connect(ns.netlink).map_err(step(format!(
        "open a netlink socket in {}",
        netns_path.display()
    )))?;
    let (host_if, cont_if) = (spec.host_iface(), spec.container_iface());

    let lo_up = async {
        inside
            .link()
            .set(LinkUnspec::new_with_index(LOOPBACK_INDEX).up().build())
            .execute()
            .await
            .map_err(nl_io)
            .map_err(step(format!("bring lo up in {}", netns_path.display())))
    };

    let pair = async {
        // The peer is born inside the container's namespace (IFLA_NET_NS_FD on the peer).
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(cont_if.clone())
            .mtu(spec.mtu)
            .setns_by_fd(ns.ns.as_raw_fd())
            // Not `.up()` here: the kernel opens the peer before it is paired (ENOTCONN).
            .build();
        // The host's end is brought up once it has no IPv6 (see `host_side`).
        let veth = LinkVeth::new(&host_if, &cont_if)
            .mtu(spec.mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        host.link()
            .add(veth)
            .execute()
            .await
            .map_err(nl_io)
            .map_err(step(format!("create veth pair {host_if}/{cont_if}")))?;
        created_veth.store(true, Ordering::SeqCst);

        let host_side = async {
            let index = link_index(host, &host_if)
                .await
                .map_err(step(format!("find {host_if}")))?;
            // No IPv6 on the host's end: the packet filter is IPv4's, and with the
            // link-local address the kernel gives every interface, a container reached each
            // host service listening on [::] whatever the rules. It also keeps the host's
            // IPv6 routing table from growing by a few routes per container (the kernel
            // walks it for every interface that goes).
            disable_ipv6(&host_if).map_err(step(format!("disable IPv6 on {host_if}")))?;
            host.link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .map_err(nl_io)
                .map_err(step(format!("bring {host_if} up")))?;
            host.address()
                .add(index, IpAddr::V4(spec.host_ip), spec.prefix_len)
                .execute()
                .await
                .map_err(nl_io)
                .map_err(step(format!(
                    "add address {}/{} to {host_if}",
                    spec.host_ip, spec.prefix_len
                )))
        };
        let container_side = async {
            let up = async {
                inside
                    .link()
                    .set(LinkUnspec::new_with_name(&cont_if).up().build())
                    .execute()
                    .await
                    .map_err(nl_io)
                    .map_err(step(format!("bring {cont_if} up")))
            };
            let address = async {
                let index = link_index(&inside, &cont_if)
                    .await
                    .map_err(step(format!("find {cont_if} in {}", netns_path.display())))?;
                inside
                    .address()
                    .add(index, IpAddr::V4(spec.container_ip), spec.prefix_len)
                    .execute()
                    .await
                    .map_err(nl_io)
                    .map_err(step(format!(
                        "add address {}/{} to {cont_if}",
                        spec.container_ip, spec.prefix_len
                    )))?;
                Ok(index)
            };
            // The route needs the link up and its address (the gateway on-link).
            let (_, index) = tokio::try_join!(up, address)?;
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(spec.host_ip)
                .output_interface(index)
                .build();
            inside
                .route()
                .add(route)
                .execute()
                .await
                .map_err(nl_io)
                .map_err(step(format!(
                    "add default route via {} on {cont_if}",
                    spec.host_ip
                )))
        };
        tokio::try_join!(host_side, container_side).map(|_| ())
    };

    tokio::try_join!(lo_up, pair).map(|_| ())
}

/// Turns IPv6 off on the host's interface `name` (a host without IPv6 has nothing to do).
pub fn disable_ipv6(name: &str) -> io::Result<()> {
    match std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Removes what [`setup`] made: the namespace file, then the veth pair (by deleting its host
/// side). Anything already gone is fine; every step runs even if another fails, and the error
/// lists the ones that failed. When it returns, the interfaces are gone.
///
/// The order is for speed: unmounting drops the namespace's last reference, so the kernel's
/// namespace cleanup starts removing the pair at once, batched with other dying namespaces;
/// the explicit delete then either finds it gone (`ENODEV`) or removes it itself (when the
/// namespace is still held, e.g. by a process left in it). Unregistering a veth costs the
/// kernel RCU grace periods (~20 ms here, as `ip link del`), which is the bulk of a teardown.
/// The fast half of a teardown, for a container whose processes are all gone: unmounts the
/// netns file. The kernel then frees the namespace on its own, and with it the container's
/// end of the veth and so the host's end too, a few milliseconds later (deleting a veth
/// waits for that same cleanup: about 20 ms of RCU grace periods). [`host_iface_exists`]
/// tells when it is done; [`teardown`] deletes explicitly and waits.
pub fn release(netns_path: &Path) -> Result<(), NetError> {
    netns::destroy(netns_path)
}

/// Whether the host's end of the container's veth still exists.
pub fn host_iface_exists(spec: &NetSpec) -> bool {
    check_ifname(&spec.host_iface()).is_ok()
        && Path::new("/sys/class/net").join(spec.host_iface()).exists()
}

pub async fn teardown(netns_path: &Path, spec: &NetSpec) -> Result<(), NetError> {
    let mut errors = Vec::new();
    if let Err(e) = netns::destroy(netns_path) {
        errors.push(e);
    }
    let host_if = spec.host_iface();
    // A name that cannot exist cannot need deleting (and the kernel would refuse it).
    if check_ifname(&host_if).is_ok() {
        let deleted = match connect_host() {
            Ok(h) => delete_link(&h, &host_if).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            errors.push(step(format!("delete {host_if}"))(e));
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(NetError::Several(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(prefix: &str, id: &str) -> NetSpec {
        NetSpec::new(id, prefix, "10.254.0.4".parse().unwrap(), 1500)
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let s = spec("w-", "x");
        let p = Path::new("/nonexistent/netns");
        // Built, never polled: only the type matters (the daemon spawns them on tokio).
        send(&setup(p, &s));
        send(&teardown(p, &s));
    }

    #[test]
    fn names() {
        let s = spec(DEFAULT_PREFIX, "0123456789a");
        assert_eq!(s.host_iface(), "w-0123456789a-0");
        assert_eq!(s.container_iface(), "w-0123456789a-1");
        assert_eq!(s.host_iface().len(), MAX_IFNAME);
        assert_eq!(iface("w-", "x", 2), "w-x-2");
        assert_eq!(s.host_ip.to_string(), "10.254.0.5");
        assert_eq!(s.container_ip.to_string(), "10.254.0.6");
        assert_eq!(s.prefix_len, 30);
        s.validate().unwrap();
    }

    #[test]
    fn invalid_specs_are_refused_up_front() {
        let e = spec("wt-", "0123456789a")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"wt-0123456789a-0\" is 16 bytes"), "{e}");
        let e = spec("a/", "b").validate().unwrap_err().to_string();
        assert!(e.contains("'/'"), "{e}");
        let e = spec("a b", "c").validate().unwrap_err().to_string();
        assert!(e.contains("' '"), "{e}");
        let mut s = spec("w-", "x");
        s.mtu = 20;
        assert!(s.validate().unwrap_err().to_string().contains("MTU 20"));
        let mut s = spec("w-", "x");
        s.prefix_len = 33;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("prefix length 33"));
    }
}
