//! Per-identity admission: how many connections and output streams one
//! client identity may hold at once. Each admitted one holds a [`Permit`]
//! that gives its place back when dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Connection,
    Stream,
}

impl Kind {
    fn setting(self) -> &'static str {
        match self {
            Self::Connection => "limits.max_connections_per_identity",
            Self::Stream => "limits.max_streams_per_identity",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Connection => "connections",
            Self::Stream => "output streams",
        }
    }
}

/// Why a connection or stream was refused; shown to the caller.
#[derive(Debug, Clone, thiserror::Error)]
#[error("identity {identity:?} already has {held} {} open; the limit is {limit} ({})", kind.noun(), kind.setting())]
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
    held: Mutex<HashMap<(Kind, String), usize>>,
}

impl Admission {
    pub fn new(max_connections: usize, max_streams: usize) -> Arc<Self> {
        Arc::new(Self { max_connections, max_streams, held: Mutex::new(HashMap::new()) })
    }

    pub fn connection(self: &Arc<Self>, identity: &str) -> Result<Permit, Exhausted> {
        self.admit(Kind::Connection, identity, self.max_connections)
    }

    pub fn stream(self: &Arc<Self>, identity: &str) -> Result<Permit, Exhausted> {
        self.admit(Kind::Stream, identity, self.max_streams)
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
}
