//! Zero-copy views over netlink bytes and a small message builder.
//! Netlink and attribute headers are host-endian; ctnetlink values are
//! big-endian (the accessors say which). Every view checks lengths before
//! reading, so no accessor panics on truncated or hostile input: a bad
//! length ends iteration with an error item instead.

use crate::consts::*;
use crate::error::DecodeError;

fn ne_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn ne_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message in a receive buffer.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub port: u32,
    /// The bytes after the 16-byte header.
    pub payload: &'a [u8],
}

/// Iterator over the messages of one datagram.
pub struct Messages<'a> {
    buf: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let b = self.buf;
        if b.len() < NLMSG_HDRLEN {
            self.buf = &[];
            return Some(Err(DecodeError::Truncated("nlmsghdr")));
        }
        let len = ne_u32(b, 0) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            self.buf = &[];
            return Some(Err(DecodeError::BadLength {
                what: "nlmsg_len",
                len,
                available: b.len(),
            }));
        }
        let msg = Message {
            kind: ne_u16(b, 4),
            flags: ne_u16(b, 6),
            seq: ne_u32(b, 8),
            port: ne_u32(b, 12),
            payload: &b[NLMSG_HDRLEN..len],
        };
        self.buf = b.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(msg))
    }
}

/// One attribute: its type (flags masked off) and value bytes.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    pub fn u8(&self, name: &'static str) -> Result<u8, DecodeError> {
        self.exact::<1>(name).map(|b| b[0])
    }

    pub fn be16(&self, name: &'static str) -> Result<u16, DecodeError> {
        self.exact::<2>(name).map(u16::from_be_bytes)
    }

    pub fn be32(&self, name: &'static str) -> Result<u32, DecodeError> {
        self.exact::<4>(name).map(u32::from_be_bytes)
    }

    pub fn be64(&self, name: &'static str) -> Result<u64, DecodeError> {
        self.exact::<8>(name).map(u64::from_be_bytes)
    }

    /// Exactly `N` bytes, as the kernel's policy demands.
    pub fn exact<const N: usize>(&self, name: &'static str) -> Result<[u8; N], DecodeError> {
        self.value.try_into().map_err(|_| DecodeError::AttrSize {
            attr: name,
            expected: N,
            got: self.value.len(),
        })
    }

    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.value)
    }
}

/// Iterator over a run of attributes.
#[derive(Clone)]
pub struct Attrs<'a> {
    buf: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.buf;
        if b.len() < NLA_HDRLEN {
            // Trailing padding shorter than a header is tolerated.
            self.buf = &[];
            return None;
        }
        let len = usize::from(ne_u16(b, 0));
        if len < NLA_HDRLEN || len > b.len() {
            self.buf = &[];
            return Some(Err(DecodeError::BadLength {
                what: "nla_len",
                len,
                available: b.len(),
            }));
        }
        let attr = Attr {
            kind: ne_u16(b, 2) & NLA_TYPE_MASK,
            value: &b[NLA_HDRLEN..len],
        };
        self.buf = b.get(align4(len)..).unwrap_or(&[]);
        Some(Ok(attr))
    }
}

/// Builds one request: header, nfgenmsg, then (nested) attributes.
pub struct MessageBuilder {
    buf: Vec<u8>,
    start: usize,
    nests: Vec<usize>,
}

impl MessageBuilder {
    /// Start a ctnetlink message in `buf` (appending, so several messages
    /// can be batched into one datagram).
    pub fn new(mut buf: Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]); // length, filled by finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&[family, NFNETLINK_V0, 0, 0]); // nfgenmsg, res_id 0
        Self {
            buf,
            start,
            nests: Vec::new(),
        }
    }

    pub fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + value.len();
        // Attribute values here are at most 16 bytes; the cast cannot truncate.
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end(&mut self) -> &mut Self {
        if let Some(at) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        while !self.nests.is_empty() {
            self.end();
        }
        let len = u32::try_from(self.buf.len() - self.start).unwrap_or(u32::MAX);
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_and_views_round_trip() {
        let mut m =
            MessageBuilder::new(Vec::new(), ctnl_msg(IPCTNL_MSG_CT_NEW), NLM_F_REQUEST, 7, 2);
        m.begin(CTA_TUPLE_ORIG)
            .begin(CTA_TUPLE_PROTO)
            .attr(CTA_PROTO_NUM, &[6])
            .end()
            .end();
        m.attr(CTA_TIMEOUT, &30u32.to_be_bytes());
        let bytes = m.finish();
        let msgs: Vec<_> = Messages::new(&bytes)
            .collect::<Result<_, _>>()
            .expect("valid");
        assert_eq!(msgs.len(), 1);
        assert_eq!((msgs[0].kind, msgs[0].seq), (0x100, 7));
        let attrs: Vec<_> = Attrs::new(&msgs[0].payload[4..])
            .collect::<Result<_, _>>()
            .expect("valid");
        assert_eq!(attrs[0].kind, CTA_TUPLE_ORIG);
        assert_eq!(attrs[1].be32("CTA_TIMEOUT"), Ok(30));
        let proto = attrs[0].nested().next().expect("one").expect("valid");
        assert_eq!(
            proto
                .nested()
                .next()
                .expect("one")
                .expect("valid")
                .u8("CTA_PROTO_NUM"),
            Ok(6)
        );
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(matches!(Messages::new(&[1, 2, 3]).next(), Some(Err(_))));
        let mut hdr = vec![0u8; 16];
        hdr[0] = 200;
        assert!(matches!(
            Messages::new(&hdr).next(),
            Some(Err(DecodeError::BadLength { .. }))
        ));
        assert!(matches!(Attrs::new(&[2, 0, 1, 0]).next(), Some(Err(_))));
        assert!(Attrs::new(&[0, 0]).next().is_none());
    }
}
