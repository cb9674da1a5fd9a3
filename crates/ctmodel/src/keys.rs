//! [`Keys`]: the fields of one entry that a [`Breakdown`](crate::Breakdown)
//! counts and a [`Filter`](crate::Filter) tests, and nothing else. Built from
//! a whole [`Entry`] ([`Keys::of`]) or straight from a line of text
//! ([`crate::textkeys`]); both must give the same value for the same line.

use std::net::IpAddr;

use crate::entry::{Entry, Nat};
use crate::proto::{L3Proto, L4Proto, State};

/// A connection state as the grouping sees it: the kernel's number for a
/// protocol with a state table, or a name it does not know (borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKey<'a> {
    Code(u8),
    Name(&'a str),
}

impl<'a> StateKey<'a> {
    pub fn of(state: &'a State) -> Self {
        match state {
            State::Code(c) => Self::Code(*c),
            State::Other(name) => Self::Name(name),
        }
    }

    /// A printed name looked up in `l4`'s state table, as
    /// [`State::from_name`] does.
    pub fn from_name(l4: L4Proto, name: &'a str) -> Self {
        l4.state_names()
            .and_then(|names| names.iter().position(|n| *n == name))
            .and_then(|i| u8::try_from(i).ok())
            .map_or(Self::Name(name), Self::Code)
    }

    /// The name under `l4`, as [`State::name`].
    pub fn name(self, l4: L4Proto) -> Option<&'a str> {
        match self {
            Self::Code(c) => l4
                .state_names()
                .and_then(|names| names.get(usize::from(c)).copied()),
            Self::Name(name) => Some(name),
        }
    }
}

/// What one entry contributes to a breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys<'a> {
    pub l3: Option<L3Proto>,
    pub l4: L4Proto,
    pub state: Option<StateKey<'a>>,
    pub assured: bool,
    pub unreplied: bool,
    /// `zone=` (0 when absent: conntrack -L omits the default zone).
    pub zone: u16,
    /// `mark=` (0 when absent).
    pub mark: u32,
    pub nat: Nat,
    /// Of the original tuple.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub timeout: Option<u32>,
    /// The reply tuple's source: after DNAT, the backend that answers.
    pub reply_src: IpAddr,
}

impl<'a> Keys<'a> {
    pub fn of(e: &'a Entry) -> Self {
        Self {
            l3: e.l3,
            l4: e.l4(),
            state: e.state.as_ref().map(StateKey::of),
            assured: e.assured(),
            unreplied: e.unreplied(),
            zone: e.zone.unwrap_or(0),
            mark: e.mark.unwrap_or(0),
            nat: e.nat(),
            src: e.orig.src,
            dst: e.orig.dst,
            sport: e.orig.sport(),
            dport: e.orig.dport(),
            timeout: e.timeout,
            reply_src: e.reply.src,
        }
    }

    pub fn state_name(&self) -> Option<&'a str> {
        self.state.and_then(|s| s.name(self.l4))
    }
}
