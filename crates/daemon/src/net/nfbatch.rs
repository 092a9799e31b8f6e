//! The per-container changes of the packet filter (net_in's port mapping, net_out's chain,
//! jump and rule, a container's removal) sent to nf_tables as netlink batches built here,
//! without libnftables. The table itself, a recovered container's rules and what is listed
//! still go through libnftables (`net::nftables`).
//!
//! Why: before every command libnftables 1.0.6 fills its cache, and for an element or rule
//! command that cache holds every chain of the host's ruleset, dumped from the kernel and
//! parsed (`nf_tables_dump_chains`, `netlink_delinearize_chain`), re-read after each change
//! since each change moves the kernel's generation on. With a chain per container a change
//! cost grew with the containers (docs/daemon.md, "Scale"). A batch here is one message per
//! object and reads nothing back, so its cost does not depend on the table's size.
//!
//! Each [`Batch`] is one nfnetlink batch: one atomic transaction, every message acked, the
//! first error returned (with the command it stood for, in nft syntax). The socket is opened
//! close-on-exec in the calling thread's network namespace, the host's (see `net::netns`), and
//! kept for the daemon's life.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
/// Linux 6.3+: a delete that is no error when the object is not there.
const NFT_MSG_DESTROYCHAIN: u16 = 27;
const NFT_MSG_DESTROYSETELEM: u16 = 30;

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NFT_JUMP: i32 = -3;
const NF_ACCEPT: i32 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
/// The verdict register and the first data register (16 bytes).
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CMP_EQ: u32 = 0;
const NFT_RANGE_EQ: u32 = 0;
const NLA_F_NESTED: u16 = 0x8000;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;

/// A kernel refusal: the errno and the command (nft syntax) it answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command}: {}", std::io::Error::from_raw_os_error(*.errno))]
pub struct BatchError {
    pub errno: i32,
    pub command: String,
}

/// The data of a map element.
pub enum Data<'a> {
    /// `ipv4_addr . inet_service`.
    AddrPort(Ipv4Addr, u16),
    /// `jump <chain>`.
    Jump(&'a str),
}

/// A key of a map element.
pub enum Key {
    Port(u16),
    Addr(Ipv4Addr),
}

impl Key {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Port(p) => p.to_be_bytes().to_vec(),
            Key::Addr(a) => a.octets().to_vec(),
        }
    }
    fn text(&self) -> String {
        match self {
            Key::Port(p) => p.to_string(),
            Key::Addr(a) => a.to_string(),
        }
    }
}

/// One expression of a rule; each of the loads puts its value in the first register, which
/// the checks after it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `len` bytes at `offset` of the network (`transport` false) or transport header.
    Payload {
        transport: bool,
        offset: u32,
        len: u32,
    },
    /// The layer 4 protocol (`meta l4proto`).
    L4Proto,
    /// The register is `value`.
    Equals(Vec<u8>),
    /// The register is ANDed with the mask.
    Mask(Vec<u8>),
    /// The register is within `from..=to` (big-endian).
    Range(Vec<u8>, Vec<u8>),
    /// `log prefix "..."`.
    Log(String),
    Accept,
}

/// The commands of one transaction on an `ip` family table.
pub struct Batch<'t> {
    table: &'t str,
    buf: Vec<u8>,
    /// The batch's first sequence number: the begin message's; the commands follow.
    seq: u32,
    /// The nft command each message stands for, in order.
    commands: Vec<String>,
}

/// Each batch takes its own range of sequence numbers, so that an answer to an earlier one
/// is never taken for this one's.
static SEQ: AtomicU32 = AtomicU32::new(1);
const SEQ_RANGE: u32 = 1 << 20;

impl<'t> Batch<'t> {
    pub fn new(table: &'t str) -> Batch<'t> {
        let mut b = Batch {
            table,
            buf: Vec::with_capacity(512),
            seq: SEQ.fetch_add(SEQ_RANGE, Ordering::Relaxed),
            commands: Vec::new(),
        };
        b.header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, libc::AF_UNSPEC as u8);
        b
    }

    /// `create element` (an existing key is `EEXIST`) or, with `create` false, `add element`.
    pub fn add_element(&mut self, set: &str, key: Key, data: Data, create: bool) -> &mut Self {
        let flags = NLM_F_CREATE | if create { NLM_F_EXCL } else { 0 };
        let verb = if create { "create" } else { "add" };
        let value = match &data {
            Data::AddrPort(a, p) => format!("{a} . {p}"),
            Data::Jump(c) => format!("jump {c}"),
        };
        let text = format!(
            "{verb} element ip {} {set} {{ {} : {value} }}",
            self.table,
            key.text()
        );
        self.element(NFT_MSG_NEWSETELEM, flags, set, &key, Some(&data), text)
    }

    /// `delete element` or, with `destroy`, the same without an error when it is not there.
    pub fn delete_element(&mut self, set: &str, key: Key, destroy: bool) -> &mut Self {
        let (ty, verb) = if destroy {
            (NFT_MSG_DESTROYSETELEM, "destroy")
        } else {
            (NFT_MSG_DELSETELEM, "delete")
        };
        let text = format!(
            "{verb} element ip {} {set} {{ {} }}",
            self.table,
            key.text()
        );
        self.element(ty, 0, set, &key, None, text)
    }

    /// `add chain` (fine if it is there).
    pub fn add_chain(&mut self, chain: &str) -> &mut Self {
        let text = format!("add chain ip {} {chain}", self.table);
        self.chain(NFT_MSG_NEWCHAIN, NLM_F_CREATE, chain, text)
    }

    /// `delete chain` or, with `destroy`, the same without an error when it is not there.
    pub fn delete_chain(&mut self, chain: &str, destroy: bool) -> &mut Self {
        let (ty, verb) = if destroy {
            (NFT_MSG_DESTROYCHAIN, "destroy")
        } else {
            (NFT_MSG_DELCHAIN, "delete")
        };
        let text = format!("{verb} chain ip {} {chain}", self.table);
        self.chain(ty, 0, chain, text)
    }

    /// `insert rule`: at the top of `chain`. `text` is the rule in nft syntax, for errors.
    pub fn insert_rule(&mut self, chain: &str, exprs: &[Expr], text: &str) -> &mut Self {
        let text = format!("insert rule ip {} {chain} {text}", self.table);
        let start = self.message(NFT_MSG_NEWRULE, NLM_F_CREATE, text);
        let b = &mut self.buf;
        attr_str(b, NFTA_RULE_TABLE, self.table);
        attr_str(b, NFTA_RULE_CHAIN, chain);
        let list = nest_start(b, NFTA_RULE_EXPRESSIONS);
        for e in exprs {
            let elem = nest_start(b, NFTA_LIST_ELEM);
            let u32_attr = |b: &mut Vec<u8>, ty: u16, v: u32| attr(b, ty, &v.to_be_bytes());
            let data = |b: &mut Vec<u8>, ty: u16, v: &[u8]| {
                let d = nest_start(b, ty);
                attr(b, NFTA_DATA_VALUE, v);
                nest_end(b, d);
            };
            let name = match e {
                Expr::Payload { .. } => "payload",
                Expr::L4Proto => "meta",
                Expr::Equals(_) => "cmp",
                Expr::Mask(_) => "bitwise",
                Expr::Range(..) => "range",
                Expr::Log(_) => "log",
                Expr::Accept => "immediate",
            };
            attr_str(b, NFTA_EXPR_NAME, name);
            let d = nest_start(b, NFTA_EXPR_DATA);
            // The attribute numbers are each expression's own (linux/netfilter/nf_tables.h).
            match e {
                Expr::Payload {
                    transport,
                    offset,
                    len,
                } => {
                    u32_attr(b, 1, NFT_REG_1); // NFTA_PAYLOAD_DREG
                    u32_attr(b, 2, if *transport { 2 } else { 1 }); // BASE
                    u32_attr(b, 3, *offset); // OFFSET
                    u32_attr(b, 4, *len); // LEN
                }
                Expr::L4Proto => {
                    u32_attr(b, 1, NFT_REG_1); // NFTA_META_DREG
                    u32_attr(b, 2, NFT_META_L4PROTO); // KEY
                }
                Expr::Equals(v) => {
                    u32_attr(b, 1, NFT_REG_1); // NFTA_CMP_SREG
                    u32_attr(b, 2, NFT_CMP_EQ); // OP
                    data(b, 3, v); // DATA
                }
                Expr::Mask(m) => {
                    u32_attr(b, 1, NFT_REG_1); // NFTA_BITWISE_SREG
                    u32_attr(b, 2, NFT_REG_1); // DREG
                    u32_attr(b, 3, m.len() as u32); // LEN
                    data(b, 4, m); // MASK
                    data(b, 5, &vec![0; m.len()]); // XOR
                }
                Expr::Range(from, to) => {
                    u32_attr(b, 1, NFT_REG_1); // NFTA_RANGE_SREG
                    u32_attr(b, 2, NFT_RANGE_EQ); // OP
                    data(b, 3, from); // FROM_DATA
                    data(b, 4, to); // TO_DATA
                }
                Expr::Log(prefix) => attr_str(b, 2, prefix), // NFTA_LOG_PREFIX
                Expr::Accept => {
                    u32_attr(b, 1, NFT_REG_VERDICT); // NFTA_IMMEDIATE_DREG
                    let imm = nest_start(b, 2); // DATA
                    let verdict = nest_start(b, NFTA_DATA_VERDICT);
                    attr(b, NFTA_VERDICT_CODE, &NF_ACCEPT.to_be_bytes());
                    nest_end(b, verdict);
                    nest_end(b, imm);
                }
            }
            nest_end(b, d);
            nest_end(b, elem);
        }
        nest_end(b, list);
        self.finish(start)
    }

    /// Sends the batch and waits for every message's answer: all applied, or none.
    pub fn commit(mut self) -> Result<(), BatchError> {
        self.header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, libc::AF_UNSPEC as u8);
        let socket = SOCKET
            .get_or_init(|| open().map(Mutex::new))
            .as_ref()
            .map_err(|&errno| BatchError {
                errno,
                command: "open a netfilter netlink socket".into(),
            })?;
        let socket = socket.lock().unwrap_or_else(|p| p.into_inner());
        exchange(socket.as_raw_fd(), &self.buf, self.seq, &self.commands)
    }

    fn chain(&mut self, ty: u16, flags: u16, chain: &str, text: String) -> &mut Self {
        let start = self.message(ty, flags, text);
        attr_str(&mut self.buf, NFTA_CHAIN_TABLE, self.table);
        attr_str(&mut self.buf, NFTA_CHAIN_NAME, chain);
        self.finish(start)
    }

    fn element(
        &mut self,
        ty: u16,
        flags: u16,
        set: &str,
        key: &Key,
        data: Option<&Data>,
        text: String,
    ) -> &mut Self {
        let start = self.message(ty, flags, text);
        attr_str(&mut self.buf, NFTA_SET_ELEM_LIST_TABLE, self.table);
        attr_str(&mut self.buf, NFTA_SET_ELEM_LIST_SET, set);
        let elements = nest_start(&mut self.buf, NFTA_SET_ELEM_LIST_ELEMENTS);
        let element = nest_start(&mut self.buf, NFTA_LIST_ELEM);
        let k = nest_start(&mut self.buf, NFTA_SET_ELEM_KEY);
        attr(&mut self.buf, NFTA_DATA_VALUE, &key.bytes());
        nest_end(&mut self.buf, k);
        if let Some(data) = data {
            let d = nest_start(&mut self.buf, NFTA_SET_ELEM_DATA);
            match data {
                Data::AddrPort(a, p) => {
                    // A concatenation: each part in a 4-byte register.
                    let mut v = a.octets().to_vec();
                    v.extend_from_slice(&p.to_be_bytes());
                    v.extend_from_slice(&[0, 0]);
                    attr(&mut self.buf, NFTA_DATA_VALUE, &v);
                }
                Data::Jump(chain) => {
                    let verdict = nest_start(&mut self.buf, NFTA_DATA_VERDICT);
                    attr(&mut self.buf, NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
                    attr_str(&mut self.buf, NFTA_VERDICT_CHAIN, chain);
                    nest_end(&mut self.buf, verdict);
                }
            }
            nest_end(&mut self.buf, d);
        }
        nest_end(&mut self.buf, element);
        nest_end(&mut self.buf, elements);
        self.finish(start)
    }

    /// Starts a command's message; its start, for [`Batch::finish`].
    fn message(&mut self, ty: u16, flags: u16, text: String) -> usize {
        self.commands.push(text);
        let start = self.buf.len();
        self.header(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            libc::AF_INET as u8,
        );
        start
    }

    fn finish(&mut self, start: usize) -> &mut Self {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// A netlink header and nfgenmsg; the batch messages' own length is set here, a
    /// command's by [`Batch::finish`].
    fn header(&mut self, ty: u16, flags: u16, family: u8) {
        assert!(
            self.commands.len() < SEQ_RANGE as usize - 1,
            "a batch too long"
        );
        let batch = ty == NFNL_MSG_BATCH_BEGIN || ty == NFNL_MSG_BATCH_END;
        // Begin: seq; command i (pushed already): seq + 1 + i; end: after the last.
        let n = self.commands.len() as u32 + u32::from(ty == NFNL_MSG_BATCH_END);
        let seq = self.seq.wrapping_add(n);
        let b = &mut self.buf;
        b.extend_from_slice(&20u32.to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.push(family);
        b.push(0);
        let res_id: u16 = if batch { NFNL_SUBSYS_NFTABLES } else { 0 };
        b.extend_from_slice(&res_id.to_be_bytes());
    }
}

fn attr(b: &mut Vec<u8>, ty: u16, value: &[u8]) {
    let len = 4 + value.len();
    b.extend_from_slice(&(len as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(value);
    b.resize(b.len() + (len.next_multiple_of(4) - len), 0);
}

fn attr_str(b: &mut Vec<u8>, ty: u16, value: &str) {
    let mut v = value.as_bytes().to_vec();
    v.push(0);
    attr(b, ty, &v);
}

fn nest_start(b: &mut Vec<u8>, ty: u16) -> usize {
    let start = b.len();
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    start
}

fn nest_end(b: &mut [u8], start: usize) {
    let len = (b.len() - start) as u16;
    b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

static SOCKET: OnceLock<Result<Mutex<OwnedFd>, i32>> = OnceLock::new();

fn open() -> Result<OwnedFd, i32> {
    // SAFETY: plain socket(2); the fd returned is new and ours.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: as above.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // An answer that never comes is an error, not a hung daemon.
    let timeout = libc::timeval {
        tv_sec: 10,
        tv_usec: 0,
    };
    // SAFETY: SO_RCVTIMEO takes a timeval.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Ok(fd)
}

/// Sends `batch` and reads one answer per command (sequence numbers `seq` + 1..=n).
fn exchange(fd: i32, batch: &[u8], seq: u32, commands: &[String]) -> Result<(), BatchError> {
    let os = |command: &str| BatchError {
        errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        command: command.to_string(),
    };
    let mut buf = vec![0u8; 16384];
    // What an earlier batch left unread (one that timed out) goes first.
    // SAFETY: recv(2) into a buffer we own.
    while unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) } > 0 {}
    // SAFETY: send(2) of a buffer we own, to the kernel (the unbound socket's default peer).
    if unsafe { libc::send(fd, batch.as_ptr().cast(), batch.len(), 0) } < 0 {
        return Err(os("send the batch"));
    }
    let mut answered = vec![false; commands.len()];
    let mut first: Option<BatchError> = None;
    // The kernel queues every answer of a batch at once, when it is done with it: after the
    // first read, what is not there yet will not come.
    let mut wait = 0;
    while answered.iter().any(|a| !a) {
        // SAFETY: recv(2) into a buffer we own.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), wait) };
        if n < 0 {
            match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock if wait != 0 => break,
                _ => return Err(os("read the kernel's answer")),
            }
        }
        wait = libc::MSG_DONTWAIT;
        let mut msg = &buf[..n as usize];
        while msg.len() >= 16 {
            let len = u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(msg[4..6].try_into().unwrap());
            let i = u32::from_ne_bytes(msg[8..12].try_into().unwrap())
                .wrapping_sub(seq)
                .wrapping_sub(1) as usize;
            if len < 16 || len > msg.len() {
                break;
            }
            if ty == NLMSG_ERROR && len >= 20 && i < commands.len() {
                answered[i] = true;
                let errno = -i32::from_ne_bytes(msg[16..20].try_into().unwrap());
                if errno != 0 && first.is_none() {
                    first = Some(BatchError {
                        errno,
                        command: commands[i].clone(),
                    });
                }
            }
            msg = &msg[len.next_multiple_of(4).min(msg.len())..];
        }
    }
    if let Some(e) = first {
        return Err(e);
    }
    match answered.iter().position(|a| !a) {
        Some(i) => Err(BatchError {
            errno: libc::EPROTO,
            command: format!("{} (no answer from the kernel)", commands[i]),
        }),
        None => Ok(()),
    }
}
