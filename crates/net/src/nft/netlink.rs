//! nftables transactions sent straight over netlink, for the changes that
//! must land fast. The `nft` binary reads back every chain of the table
//! before it applies anything (55 ms at 20,000 chains with nft 1.0.6),
//! which alone breaks a 50 ms budget; the kernel itself needs none of it.
//!
//! Only what the service proxy changes incrementally is covered: chains,
//! rules built from a handful of expressions, timeout sets and map
//! elements. Whole tables are still written as `nft` scripts. The message
//! and attribute numbers are the kernel's uapi (`linux/netfilter/nf_tables.h`,
//! `linux/netfilter/nfnetlink.h`); no maintained, Apache-compatible crate
//! encodes them (rustables is GPL-3.0, nftnl-rs links the C libnftnl).

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_ERROR: u16 = 2;

const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_GETGEN: u16 = 16;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

const NFPROTO_IPV4: u8 = 2;

/// Registers: the verdict register and the first two data registers.
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;

/// What a rule is made of. Each names its kernel expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Loads `len` bytes at `offset` of a header into register 1.
    Payload { header: Header, offset: u32, len: u32 },
    /// Loads a packet's layer-4 protocol number (one byte) into register 1.
    L4Proto,
    /// Register 1 `&= mask` (for address prefixes).
    Mask(Vec<u8>),
    /// Compares register 1; the rule stops here when it does not hold.
    Cmp { equal: bool, data: Vec<u8> },
    /// Register 1 is a member of the named set.
    Lookup(String),
    /// Adds register 1 to the named set or refreshes its timeout.
    UpdateSet(String),
    /// A random number below `modulus` into register 1.
    Random { modulus: u32 },
    /// The address type of the source address (fib saddr type) into register 1.
    SourceAddressType,
    /// Destination NAT to an address and port.
    Dnat { address: Ipv4Addr, port: u16 },
    /// The rule's verdict.
    Verdict(Verdict),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    Network,
    Transport,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Drop,
    Jump(String),
    Goto(String),
}

/// As `nft` writes it.
impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Drop => write!(f, "drop"),
            Verdict::Jump(chain) => write!(f, "jump {chain}"),
            Verdict::Goto(chain) => write!(f, "goto {chain}"),
        }
    }
}

impl Verdict {
    fn encode(&self, out: &mut Vec<u8>) {
        // NFTA_DATA_VERDICT { NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN }
        let verdict = nest_begin(out, 2);
        let (code, chain): (i32, Option<&str>) = match self {
            Verdict::Drop => (0, None),
            Verdict::Jump(chain) => (-3, Some(chain)),
            Verdict::Goto(chain) => (-4, Some(chain)),
        };
        attr(out, 1, &code.to_be_bytes());
        if let Some(chain) = chain {
            attr_str(out, 2, chain);
        }
        nest_end(out, verdict);
    }
}

/// One nftables transaction: every message applies, or none does.
pub struct Batch {
    buf: Vec<u8>,
    /// What each message does, for the error that names it.
    what: Vec<String>,
    first_seq: u32,
    set_ids: u32,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        let first_seq = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let mut batch = Batch { buf: Vec::new(), what: Vec::new(), first_seq, set_ids: 0 };
        // The batch markers carry the subsystem in nfgenmsg's res_id.
        batch.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES, |_| {});
        batch
    }

    /// True when nothing but the batch markers would be sent.
    pub fn is_empty(&self) -> bool {
        self.what.is_empty()
    }

    /// Appends one message; operation `i` goes out as number `first_seq + 1 + i`.
    fn message(&mut self, kind: u16, flags: u16, family: u8, res_id: u16, body: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        let seq = self.first_seq.wrapping_add(self.what.len() as u32);
        self.buf.extend_from_slice(&[0; 4]); // length, filled below
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, res_id (big-endian)
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        body(&mut self.buf);
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// A table operation: an `nf_tables` message acknowledged by the kernel.
    fn op(&mut self, kind: u16, flags: u16, what: String, body: impl FnOnce(&mut Vec<u8>)) {
        self.what.push(what);
        // No acknowledgement asked: the kernel answers only a refusal.
        self.message((NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST | flags, NFPROTO_IPV4, 0, body);
    }

    pub fn add_chain(&mut self, table: &str, chain: &str) {
        self.op(NFT_MSG_NEWCHAIN, NLM_F_CREATE, format!("add chain {chain}"), |b| {
            attr_str(b, 1, table); // NFTA_CHAIN_TABLE
            attr_str(b, 3, chain); // NFTA_CHAIN_NAME
        });
    }

    /// Removes every rule of a chain.
    pub fn flush_chain(&mut self, table: &str, chain: &str) {
        self.op(NFT_MSG_DELRULE, 0, format!("flush chain {chain}"), |b| {
            attr_str(b, 1, table); // NFTA_RULE_TABLE
            attr_str(b, 2, chain); // NFTA_RULE_CHAIN
        });
    }

    /// Removes an empty chain nothing refers to.
    pub fn delete_chain(&mut self, table: &str, chain: &str) {
        self.op(NFT_MSG_DELCHAIN, 0, format!("delete chain {chain}"), |b| {
            attr_str(b, 1, table);
            attr_str(b, 3, chain);
        });
    }

    pub fn add_rule(&mut self, table: &str, chain: &str, exprs: &[Expr]) {
        self.op(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, format!("add rule to {chain}: {exprs:?}"), |b| {
            attr_str(b, 1, table); // NFTA_RULE_TABLE
            attr_str(b, 2, chain); // NFTA_RULE_CHAIN
            let list = nest_begin(b, 4); // NFTA_RULE_EXPRESSIONS
            for expr in exprs {
                encode_expr(b, expr);
            }
            nest_end(b, list);
        });
    }

    /// A set of IPv4 addresses whose members expire (`flags dynamic,timeout`).
    pub fn add_timeout_set(&mut self, table: &str, set: &str, timeout: Duration) {
        self.set_ids += 1;
        let id = self.set_ids;
        self.op(NFT_MSG_NEWSET, NLM_F_CREATE, format!("add set {set}"), |b| {
            attr_str(b, 1, table); // NFTA_SET_TABLE
            attr_str(b, 2, set); // NFTA_SET_NAME
            attr(b, 3, &(0x10u32 | 0x20).to_be_bytes()); // NFTA_SET_FLAGS: TIMEOUT | EVAL
            attr(b, 4, &7u32.to_be_bytes()); // NFTA_SET_KEY_TYPE: ipv4_addr
            attr(b, 5, &4u32.to_be_bytes()); // NFTA_SET_KEY_LEN
            attr(b, 10, &id.to_be_bytes()); // NFTA_SET_ID
            attr(b, 11, &(timeout.as_millis() as u64).to_be_bytes()); // NFTA_SET_TIMEOUT
        });
    }

    pub fn delete_set(&mut self, table: &str, set: &str) {
        self.op(NFT_MSG_DELSET, 0, format!("delete set {set}"), |b| {
            attr_str(b, 1, table);
            attr_str(b, 2, set);
        });
    }

    /// Adds `key` (its fields each padded to four bytes, as nftables
    /// lays out concatenations) to a set, or to a verdict map.
    pub fn add_element(&mut self, table: &str, set: &str, key: &[u8], verdict: Option<&Verdict>) {
        self.op(NFT_MSG_NEWSETELEM, NLM_F_CREATE, format!("add element to {set}"), |b| {
            element_list(b, table, set, key, verdict);
        });
    }

    pub fn delete_element(&mut self, table: &str, set: &str, key: &[u8]) {
        self.op(NFT_MSG_DELSETELEM, 0, format!("delete element from {set}"), |b| {
            element_list(b, table, set, key, None);
        });
    }

    /// Sends the transaction and reads what the kernel refused, if anything.
    pub fn commit(mut self) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        self.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES, |_| {});
        // Then a question whose acknowledgement comes after every answer
        // to the batch: the end of them.
        let marker = self.first_seq.wrapping_add(self.what.len() as u32 + 1);
        let mut question = Batch { buf: Vec::new(), what: Vec::new(), first_seq: marker, set_ids: 0 };
        question.message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST | NLM_F_ACK, 0, 0, |_| {});

        let mut socket = Socket::new(NETLINK_NETFILTER).context("opening a netfilter netlink socket")?;
        socket.bind_auto().context("binding the netfilter netlink socket")?;
        socket.connect(&SocketAddr::new(0, 0)).context("connecting to the kernel")?;
        // One send is one transaction: the socket's buffer must hold it all.
        set_socket_option(&socket, libc::SO_SNDBUFFORCE, self.buf.len() as i32 + 4096);
        set_receive_timeout(&socket, Duration::from_secs(10));
        socket.send(&self.buf, 0).context("sending the nftables transaction")?;
        socket.send(&question.buf, 0).context("asking nftables for its generation")?;

        let mut refused: Option<(u32, i32)> = None;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = socket.recv(&mut &mut buf[..], 0).context("waiting for the kernel's answer to an nftables transaction")?;
            let mut at = 0;
            while at + 16 <= n {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("four bytes")) as usize;
                let kind = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("two bytes"));
                if len < 16 || at + len > n {
                    break;
                }
                if kind == NLMSG_ERROR && len >= 36 {
                    let code = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("four bytes"));
                    // The error's copy of the request header holds its sequence number.
                    let seq = u32::from_ne_bytes(buf[at + 28..at + 32].try_into().expect("four bytes"));
                    if seq == marker {
                        return match refused {
                            None => Ok(()),
                            Some((seq, code)) => {
                                let what = self.what.get(seq.wrapping_sub(self.first_seq).wrapping_sub(1) as usize).map_or("apply a change", |w| w.as_str());
                                bail!("nftables refused to {what}: {}", std::io::Error::from_raw_os_error(-code))
                            }
                        };
                    }
                    if code != 0 && refused.is_none() {
                        refused = Some((seq, code));
                    }
                }
                at += (len + 3) & !3;
            }
        }
    }
}

fn element_list(b: &mut Vec<u8>, table: &str, set: &str, key: &[u8], verdict: Option<&Verdict>) {
    attr_str(b, 1, table); // NFTA_SET_ELEM_LIST_TABLE
    attr_str(b, 2, set); // NFTA_SET_ELEM_LIST_SET
    let elements = nest_begin(b, 3); // NFTA_SET_ELEM_LIST_ELEMENTS
    let element = nest_begin(b, 1); // NFTA_LIST_ELEM
    let k = nest_begin(b, 1); // NFTA_SET_ELEM_KEY
    attr(b, 1, key); // NFTA_DATA_VALUE
    nest_end(b, k);
    if let Some(verdict) = verdict {
        let data = nest_begin(b, 2); // NFTA_SET_ELEM_DATA
        verdict.encode(b);
        nest_end(b, data);
    }
    nest_end(b, element);
    nest_end(b, elements);
}

fn encode_expr(b: &mut Vec<u8>, expr: &Expr) {
    if let Expr::Dnat { address, port } = expr {
        // The address and port go into registers 1 and 2 first.
        immediate_value(b, REG_1, &address.octets());
        immediate_value(b, REG_2, &port.to_be_bytes());
    }
    let element = nest_begin(b, 1); // NFTA_LIST_ELEM
    let name = match expr {
        Expr::Payload { .. } => "payload",
        Expr::L4Proto => "meta",
        Expr::Mask(_) => "bitwise",
        Expr::Cmp { .. } => "cmp",
        Expr::Lookup(_) => "lookup",
        Expr::UpdateSet(_) => "dynset",
        Expr::Random { .. } => "numgen",
        Expr::SourceAddressType => "fib",
        Expr::Dnat { .. } => "nat",
        Expr::Verdict(_) => "immediate",
    };
    attr_str(b, 1, name); // NFTA_EXPR_NAME
    let data = nest_begin(b, 2); // NFTA_EXPR_DATA
    match expr {
        Expr::Payload { header, offset, len } => {
            attr(b, 1, &REG_1.to_be_bytes()); // NFTA_PAYLOAD_DREG
            let base: u32 = match header {
                Header::Network => 1,
                Header::Transport => 2,
            };
            attr(b, 2, &base.to_be_bytes()); // NFTA_PAYLOAD_BASE
            attr(b, 3, &offset.to_be_bytes()); // NFTA_PAYLOAD_OFFSET
            attr(b, 4, &len.to_be_bytes()); // NFTA_PAYLOAD_LEN
        }
        Expr::L4Proto => {
            attr(b, 1, &REG_1.to_be_bytes()); // NFTA_META_DREG
            attr(b, 2, &16u32.to_be_bytes()); // NFTA_META_KEY: NFT_META_L4PROTO
        }
        Expr::Mask(mask) => {
            attr(b, 1, &REG_1.to_be_bytes()); // NFTA_BITWISE_SREG
            attr(b, 2, &REG_1.to_be_bytes()); // NFTA_BITWISE_DREG
            attr(b, 3, &(mask.len() as u32).to_be_bytes()); // NFTA_BITWISE_LEN
            data_value(b, 4, mask); // NFTA_BITWISE_MASK
            data_value(b, 5, &vec![0; mask.len()]); // NFTA_BITWISE_XOR
        }
        Expr::Cmp { equal, data } => {
            attr(b, 1, &REG_1.to_be_bytes()); // NFTA_CMP_SREG
            attr(b, 2, &(if *equal { 0u32 } else { 1 }).to_be_bytes()); // NFTA_CMP_OP: eq / neq
            data_value(b, 3, data); // NFTA_CMP_DATA
        }
        Expr::Lookup(set) => {
            attr_str(b, 1, set); // NFTA_LOOKUP_SET
            attr(b, 2, &REG_1.to_be_bytes()); // NFTA_LOOKUP_SREG
        }
        Expr::UpdateSet(set) => {
            attr_str(b, 1, set); // NFTA_DYNSET_SET_NAME
            attr(b, 3, &1u32.to_be_bytes()); // NFTA_DYNSET_OP: update
            attr(b, 4, &REG_1.to_be_bytes()); // NFTA_DYNSET_SREG_KEY
        }
        Expr::Random { modulus } => {
            attr(b, 1, &REG_1.to_be_bytes()); // NFTA_NG_DREG
            attr(b, 2, &modulus.to_be_bytes()); // NFTA_NG_MODULUS
            attr(b, 3, &1u32.to_be_bytes()); // NFTA_NG_TYPE: random
        }
        Expr::SourceAddressType => {
            attr(b, 1, &REG_1.to_be_bytes()); // NFTA_FIB_DREG
            attr(b, 2, &3u32.to_be_bytes()); // NFTA_FIB_RESULT: address type
            attr(b, 3, &1u32.to_be_bytes()); // NFTA_FIB_FLAGS: saddr
        }
        Expr::Verdict(verdict) => {
            attr(b, 1, &REG_VERDICT.to_be_bytes()); // NFTA_IMMEDIATE_DREG
            let value = nest_begin(b, 2); // NFTA_IMMEDIATE_DATA
            verdict.encode(b);
            nest_end(b, value);
        }
        Expr::Dnat { .. } => {
            attr(b, 1, &1u32.to_be_bytes()); // NFTA_NAT_TYPE: dnat
            attr(b, 2, &(NFPROTO_IPV4 as u32).to_be_bytes()); // NFTA_NAT_FAMILY
            attr(b, 3, &REG_1.to_be_bytes()); // NFTA_NAT_REG_ADDR_MIN
            attr(b, 5, &REG_2.to_be_bytes()); // NFTA_NAT_REG_PROTO_MIN
            attr(b, 7, &2u32.to_be_bytes()); // NFTA_NAT_FLAGS: proto specified
        }
    }
    nest_end(b, data);
    nest_end(b, element);
}

fn immediate_value(b: &mut Vec<u8>, register: u32, value: &[u8]) {
    let element = nest_begin(b, 1);
    attr_str(b, 1, "immediate");
    let data = nest_begin(b, 2);
    attr(b, 1, &register.to_be_bytes()); // NFTA_IMMEDIATE_DREG
    data_value(b, 2, value); // NFTA_IMMEDIATE_DATA
    nest_end(b, data);
    nest_end(b, element);
}

/// An `nft_data` holding a plain value.
fn data_value(b: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let nest = nest_begin(b, kind);
    attr(b, 1, value); // NFTA_DATA_VALUE
    nest_end(b, nest);
}

fn attr(b: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    b.extend_from_slice(&((payload.len() + 4) as u16).to_ne_bytes());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(payload);
    pad(b);
}

/// Strings travel NUL-terminated.
fn attr_str(b: &mut Vec<u8>, kind: u16, text: &str) {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    attr(b, kind, &bytes);
}

fn nest_begin(b: &mut Vec<u8>, kind: u16) -> usize {
    let start = b.len();
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    start
}

fn nest_end(b: &mut [u8], start: usize) {
    let len = (b.len() - start) as u16;
    b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

fn pad(b: &mut Vec<u8>) {
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

fn set_socket_option(socket: &Socket, option: libc::c_int, value: i32) {
    // SAFETY: a valid socket descriptor and a pointer to an int of the given size.
    let rc = unsafe { libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, option, (&value as *const i32).cast(), std::mem::size_of::<i32>() as libc::socklen_t) };
    if rc != 0 {
        tracing::debug!("setsockopt {option}: {}", std::io::Error::last_os_error());
    }
}

fn set_receive_timeout(socket: &Socket, timeout: Duration) {
    let tv = libc::timeval { tv_sec: timeout.as_secs() as libc::time_t, tv_usec: 0 };
    // SAFETY: a valid socket descriptor and a pointer to a timeval.
    unsafe { libc::setsockopt(socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), std::mem::size_of::<libc::timeval>() as libc::socklen_t) };
}
