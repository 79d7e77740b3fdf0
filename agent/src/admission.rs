//! Admission: how many connections and output streams one client identity
//! may hold at once, and how many output streams all of them together (each
//! can hold about half a MiB of buffered output in a client that does not
//! read). Each admitted one holds a [`Permit`] that gives its place back
//! when dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Connection,
    Stream,
    /// Output streams of every identity together.
    AllStreams,
}

impl Kind {
    fn setting(self) -> &'static str {
        match self {
            Self::Connection => "limits.max_connections_per_identity",
            Self::Stream => "limits.max_streams_per_identity",
            Self::AllStreams => "limits.max_streams",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Connection => "connections",
            Self::Stream | Self::AllStreams => "output streams",
        }
    }
}

/// Why a connection or stream was refused; shown to the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{} already has {held} {} open; the limit is {limit} ({})",
    if *kind == Kind::AllStreams { "the agent".to_owned() } else { format!("identity {identity:?}") },
    kind.noun(),
    kind.setting()
)]
pub struct Exhausted {
    pub identity: String,
    pub kind: Kind,
    pub held: usize,
    pub limit: usize,
}

#[derive(Debug)]
pub struct Admission {
    max_connections: usize,
    max_streams: usize,
    max_all_streams: usize,
    held: Mutex<HashMap<(Kind, String), usize>>,
}

impl Admission {
    pub fn new(max_connections: usize, max_streams: usize) -> Arc<Self> {
        Self::with_total_streams(max_connections, max_streams, usize::MAX)
    }

    pub fn with_total_streams(max_connections: usize, max_streams: usize, max_all_streams: usize) -> Arc<Self> {
        Arc::new(Self { max_connections, max_streams, max_all_streams, held: Mutex::new(HashMap::new()) })
    }

    pub fn connection(self: &Arc<Self>, identity: &str) -> Result<Permit, Exhausted> {
        self.admit(Kind::Connection, identity, self.max_connections)
    }

    /// A place for one output stream: the agent's and the identity's.
    pub fn stream(self: &Arc<Self>, identity: &str) -> Result<StreamPermit, Exhausted> {
        let all = self.admit(Kind::AllStreams, "", self.max_all_streams)?;
        let own = self.admit(Kind::Stream, identity, self.max_streams)?;
        Ok(StreamPermit { _all: all, _own: own })
    }

    fn admit(self: &Arc<Self>, kind: Kind, identity: &str, limit: usize) -> Result<Permit, Exhausted> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry((kind, identity.to_owned())).or_default();
        if *n >= limit {
            return Err(Exhausted { identity: identity.to_owned(), kind, held: *n, limit });
        }
        *n += 1;
        Ok(Permit { admission: self.clone(), kind, identity: identity.to_owned() })
    }

    /// How many of `kind` `identity` holds now.
    pub fn held(&self, kind: Kind, identity: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&(kind, identity.to_owned())).copied().unwrap_or(0)
    }
}

/// The two places an output stream takes.
#[derive(Debug)]
pub struct StreamPermit {
    _all: Permit,
    _own: Permit,
}

/// A place taken; given back on drop.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    kind: Kind,
    identity: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.admission.held.lock().unwrap_or_else(|e| e.into_inner());
        let key = (self.kind, std::mem::take(&mut self.identity));
        if let Some(n) = held.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_per_identity_and_given_back() {
        let a = Admission::new(2, 1);
        let c1 = a.connection("alice").expect("first");
        let _c2 = a.connection("alice").expect("second");
        let err = a.connection("alice").expect_err("third");
        assert!(err.to_string().contains("limits.max_connections_per_identity"), "{err}");
        a.connection("bob").expect("others are not affected");
        drop(c1);
        a.connection("alice").expect("a place was given back");
        let _s = a.stream("alice").expect("streams are counted apart");
        assert!(a.stream("alice").is_err());
        assert_eq!(a.held(Kind::Stream, "alice"), 1);
    }

    #[test]
    fn streams_of_all_identities_are_capped_together() {
        let a = Admission::with_total_streams(8, 8, 2);
        let _s1 = a.stream("alice").expect("first");
        let s2 = a.stream("bob").expect("second");
        let err = a.stream("carol").expect_err("third, whoever asks");
        assert!(err.to_string().contains("limits.max_streams") && err.to_string().contains("the agent"), "{err}");
        assert_eq!(a.held(Kind::Stream, "carol"), 0, "a refused stream holds nothing");
        drop(s2);
        a.stream("carol").expect("a place was given back");
    }
}
