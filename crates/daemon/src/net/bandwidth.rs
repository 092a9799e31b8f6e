//! limit_bandwidth (SPEC 3.8): a token bucket filter (`tbf`) as the root qdisc of each end of
//! the container's veth, through netlink. The host's end shapes what goes into the container,
//! the container's end (inside its netns) what comes out of it.
//!
//! The original put the second tbf on an ifb device fed by an ingress qdisc and a mirred
//! filter on the host's end. A veth's two ends are two devices, each with its own egress, so
//! the container's end shapes its traffic out as exactly, with no third device to make and
//! leak, and shaping (queueing) rather than policing (dropping) at the boundary. A job cannot
//! undo it: no job has CAP_NET_ADMIN (the privileged set is Docker's default).
//!
//! The limits live in the kernel with the veth, so they outlive the daemon; [`read`] takes
//! them from there for info, after a restart too.
//!
//! tbf's parameters as `tc qdisc replace dev D root tbf rate R burst B latency 25ms` sends
//! them: the rate in bytes per second (TCA_TBF_RATE64 past 32 bits), the bucket size in bytes
//! (TCA_TBF_BURST: the kernel derives the bucket's time from it) and a queue of what the rate
//! sends in 25 ms plus the burst. A burst smaller than a full packet drops full packets (the
//! kernel warns "burst is lower than device mtu"), as with the original's tc.

use std::io;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_core::{
    DefaultNla, NetlinkMessage, NlaBuffer, NlasIterator, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

use super::{connect, connect_host, link_index, netns, nl_io, step, NetError, NetSpec};

/// The queue tbf keeps beyond the bucket, in time at the rate (the original's `latency 25ms`).
const LATENCY_MS: u64 = 25;

/// One direction's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Bytes per second.
    pub rate: u64,
    /// Bytes.
    pub burst: u64,
}

impl Limit {
    /// The request's values, or what is wrong with them.
    pub fn new(rate: u64, burst: u64) -> Result<Limit, String> {
        if rate == 0 {
            return Err("limit_bandwidth: rate must be at least 1 byte per second".into());
        }
        if burst == 0 || burst > u64::from(u32::MAX) {
            return Err(format!(
                "limit_bandwidth: burst must be 1 to {} bytes, not {burst}",
                u32::MAX
            ));
        }
        Ok(Limit { rate, burst })
    }
}

/// The limits in force: into the container (the host's end) and out of it (its own end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub into: Option<Limit>,
    pub out: Option<Limit>,
}

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
/// `TC_LINKLAYER_ETHERNET`: the kernel computes transmit times itself, no rate table.
const LINKLAYER_ETHERNET: u8 = 1;
/// `struct tc_ratespec` is 12 bytes; `struct tc_tbf_qopt` two of them and three u32s.
const RATESPEC_LEN: usize = 12;
const QOPT_LEN: usize = 2 * RATESPEC_LEN + 12;
/// The kernel's packet scheduler clock: a tick is 64 ns (PSCHED_SHIFT 6).
const NS_PER_TICK: u128 = 64;

/// Sets `limit` on both ends of the container's veth, replacing what was there.
pub async fn apply(netns_path: &Path, spec: &NetSpec, limit: Limit) -> Result<(), NetError> {
    let host_if = spec.host_iface();
    let host = connect_host().map_err(step("connect to netlink"))?;
    replace_tbf(&host, &host_if, limit)
        .await
        .map_err(step(format!("set the tbf of {host_if}")))?;
    let inner_if = spec.container_iface();
    let inner = in_netns(netns_path)?;
    replace_tbf(&inner, &inner_if, limit)
        .await
        .map_err(step(format!("set the tbf of {inner_if} in the container")))
}

/// The tbf limits on the two ends of the veth (None where an end has none).
pub async fn read(netns_path: &Path, spec: &NetSpec) -> Result<Limits, NetError> {
    let host_if = spec.host_iface();
    let host = connect_host().map_err(step("connect to netlink"))?;
    let into = root_tbf(&host, &host_if)
        .await
        .map_err(step(format!("read the qdisc of {host_if}")))?;
    let inner_if = spec.container_iface();
    let inner = in_netns(netns_path)?;
    let out = root_tbf(&inner, &inner_if).await.map_err(step(format!(
        "read the qdisc of {inner_if} in the container"
    )))?;
    Ok(Limits { into, out })
}

fn in_netns(netns_path: &Path) -> Result<Handle, NetError> {
    connect(netns::netlink_socket_in(netns_path)?).map_err(step("connect to netlink in the netns"))
}

async fn replace_tbf(handle: &Handle, ifname: &str, limit: Limit) -> io::Result<()> {
    let index = link_index(handle, ifname).await?;
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = TcHandle::ROOT;
    msg.attributes.push(TcAttribute::Kind("tbf".into()));
    msg.attributes
        .push(TcAttribute::Options(tbf_options(limit)));
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewQueueDiscipline(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut responses = handle.clone().request(req).map_err(nl_io)?;
    while let Some(m) = futures_util::StreamExt::next(&mut responses).await {
        if let rtnetlink::packet_core::NetlinkPayload::Error(e) = m.payload {
            if e.code.is_some() {
                return Err(e.to_io());
            }
        }
    }
    Ok(())
}

/// TCA_OPTIONS of a tbf: the `tc_tbf_qopt`, the burst in bytes, the rate in 64 bits if
/// needed.
fn tbf_options(limit: Limit) -> Vec<TcOption> {
    let rate32 = u32::try_from(limit.rate).unwrap_or(u32::MAX);
    let queue = (u128::from(limit.rate) * u128::from(LATENCY_MS) / 1000) + u128::from(limit.burst);
    let bucket_ticks =
        u128::from(limit.burst) * 1_000_000_000 / u128::from(limit.rate) / NS_PER_TICK;
    let mut qopt = [0u8; QOPT_LEN];
    // rate: cell_log, linklayer, overhead, cell_align, mpu, rate.
    qopt[1] = LINKLAYER_ETHERNET;
    qopt[8..12].copy_from_slice(&rate32.to_ne_bytes());
    // peakrate stays all zero (none); then limit, buffer, mtu.
    let at = 2 * RATESPEC_LEN;
    let clamp = |v: u128| u32::try_from(v).unwrap_or(u32::MAX);
    qopt[at..at + 4].copy_from_slice(&clamp(queue).to_ne_bytes());
    qopt[at + 4..at + 8].copy_from_slice(&clamp(bucket_ticks).to_ne_bytes());
    let mut opts = vec![
        TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, qopt.to_vec())),
        TcOption::Other(DefaultNla::new(
            TCA_TBF_BURST,
            (limit.burst as u32).to_ne_bytes().to_vec(),
        )),
    ];
    if limit.rate > u64::from(u32::MAX) {
        opts.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            limit.rate.to_ne_bytes().to_vec(),
        )));
    }
    opts
}

/// The root qdisc of `ifname` if it is a tbf, as a limit.
async fn root_tbf(handle: &Handle, ifname: &str) -> io::Result<Option<Limit>> {
    let index = link_index(handle, ifname).await? as i32;
    let mut dump = handle.clone().qdisc().get().index(index).execute();
    while let Some(m) = dump.try_next().await.map_err(nl_io)? {
        if m.header.index != index || m.header.parent != TcHandle::ROOT {
            continue;
        }
        let is_tbf = m
            .attributes
            .iter()
            .any(|a| matches!(a, TcAttribute::Kind(k) if k == "tbf"));
        if !is_tbf {
            return Ok(None);
        }
        let options = m.attributes.iter().find_map(|a| match a {
            TcAttribute::Options(o) => Some(o),
            _ => None,
        });
        return Ok(options.and_then(|o| parse_tbf(o)));
    }
    Ok(None)
}

/// A dumped tbf's limit. netlink-packet-route keeps the options of a qdisc it does not know
/// as one attribute holding the nested ones.
fn parse_tbf(options: &[TcOption]) -> Option<Limit> {
    use rtnetlink::packet_core::Nla;
    let mut nested = Vec::new();
    for o in options {
        let mut v = vec![0u8; o.value_len()];
        o.emit_value(&mut v);
        nested.extend_from_slice(&v);
    }
    let (mut rate, mut ticks) = (None, None);
    for nla in NlasIterator::new(&nested[..]) {
        let nla: NlaBuffer<&[u8]> = nla.ok()?;
        let v = nla.value();
        match nla.kind() {
            TCA_TBF_PARMS if v.len() >= QOPT_LEN => {
                let u32_at = |i: usize| u32::from_ne_bytes(v[i..i + 4].try_into().unwrap());
                rate.get_or_insert(u64::from(u32_at(8)));
                ticks = Some(u32_at(2 * RATESPEC_LEN + 4));
            }
            TCA_TBF_RATE64 if v.len() >= 8 => {
                rate = Some(u64::from_ne_bytes(v[..8].try_into().unwrap()));
            }
            _ => {}
        }
    }
    let (rate, ticks) = (rate?, ticks?);
    // The bucket is kept as time at the rate, in 64 ns ticks; in bytes, to the nearest (exact
    // below 15 MB/s, where a tick is worth less than a byte).
    let ns = u128::from(ticks) * NS_PER_TICK;
    let burst = (ns * u128::from(rate) + 500_000_000) / 1_000_000_000;
    Some(Limit {
        rate,
        burst: burst as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limits_are_refused_by_name() {
        assert!(Limit::new(0, 1000).unwrap_err().contains("rate"));
        assert!(Limit::new(1000, 0).unwrap_err().contains("burst"));
        assert!(Limit::new(1000, 1 << 33).unwrap_err().contains("burst"));
        assert_eq!(
            Limit::new(100_000, 1000),
            Ok(Limit {
                rate: 100_000,
                burst: 1000
            })
        );
    }

    #[test]
    fn options_read_back_as_the_limit() {
        // What the kernel dumps is the qopt with the bucket in ticks: the same bytes back.
        for (rate, burst) in [(100_000, 1000), (1 << 20, 64 << 10), (10 << 30, 1 << 20)] {
            let limit = Limit::new(rate, burst).unwrap();
            let opts = tbf_options(limit);
            // As dumped: one attribute holding the nested ones.
            let mut nested = Vec::new();
            for o in &opts {
                use rtnetlink::packet_core::Emitable;
                let mut b = vec![0u8; o.buffer_len()];
                o.emit(&mut b);
                nested.extend_from_slice(&b);
            }
            let dumped = [TcOption::Other(DefaultNla::new(2, nested))];
            let back = parse_tbf(&dumped).unwrap();
            assert_eq!(back.rate, rate);
            // The kernel keeps the bucket in 64 ns ticks: exact to within one tick's bytes.
            let tick_bytes = rate * 64 / 1_000_000_000 + 1;
            assert!(
                back.burst.abs_diff(burst) <= tick_bytes,
                "{back:?} for {burst}"
            );
        }
    }
}
