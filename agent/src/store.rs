//! History in redb: one record per execution, the set of live executions and
//! the idempotency keys. Writes go through one thread that commits them in
//! groups (one fsync for many executions); reads run on any thread.

mod record;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    thread,
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

pub use record::{ExecRecord, ExecState};

const EXECUTIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("executions");
const ACTIVE: TableDefinition<'_, &str, u8> = TableDefinition::new("active");
const IDEMPOTENCY: TableDefinition<'_, &str, &str> = TableDefinition::new("idempotency");
const META: TableDefinition<'_, &str, &str> = TableDefinition::new("meta");
/// Finished executions whose output is not compressed yet: id → end (unix ms).
const TO_COMPRESS: TableDefinition<'_, &str, u64> = TableDefinition::new("to_compress");

/// Bumped when the stored format changes incompatibly.
const SCHEMA_VERSION: &str = "1";
/// Writes committed together at most.
const GROUP_MAX: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the history database {0} is in use by another process (is another bolt-agent running on this data folder?)")]
    Locked(PathBuf),
    #[error(
        "the history database {path} is unreadable ({reason}); move it aside to start with an empty history"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("the history database {path} has schema version {found}, this agent knows {SCHEMA_VERSION}")]
    Schema { path: PathBuf, found: String },
    #[error("history database error: {0}")]
    Db(String),
    #[error("the data folder is full, the history cannot grow: {0}")]
    Full(String),
    #[error("the history writer has stopped")]
    Closed,
    #[error("the history database is being re-opened after an I/O error; retry")]
    Reopening,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    let text = e.to_string();
    // redb's errors wrap the io::Error; its text is the stable part here.
    if text.contains("No space left on device") || text.contains("Disk quota exceeded") {
        StoreError::Full(text)
    } else {
        StoreError::Db(text)
    }
}

/// What creating an execution found.
#[derive(Debug)]
pub enum Created {
    New,
    /// The caller's idempotency key was used before, by this execution.
    Existing(Box<ExecRecord>),
}

enum Op {
    Create { rec: Box<ExecRecord>, reply: oneshot::Sender<Result<Created, StoreError>> },
    Put { rec: Box<ExecRecord>, reply: oneshot::Sender<Result<(), StoreError>> },
}

/// Filters of a history query; empty fields do not filter.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub limit: usize,
    /// Only ids below this one (the previous page's last id).
    pub before: Option<String>,
    pub pack: Option<String>,
    pub action: Option<String>,
    pub caller: Option<String>,
    pub states: Vec<ExecState>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

#[derive(Clone)]
pub struct Store {
    db: Arc<Handle>,
    tx: mpsc::UnboundedSender<Op>,
    path: PathBuf,
}

/// The open database. redb refuses all work after an I/O error (a full
/// disk, say) until it is re-opened, so the writer re-opens it; meanwhile
/// callers get `Reopening`.
struct Handle {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
}

impl Handle {
    fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone().ok_or(StoreError::Reopening)
    }

    /// Closes the database (once no reader holds it) and opens it again.
    fn reopen(&self) -> Result<(), StoreError> {
        let old = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(old) = old {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if std::time::Instant::now() < deadline => {
                        old = still_shared;
                        thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(_) => return Err(StoreError::Reopening),
                }
            }
        }
        let db = open_db(&self.path)?;
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        tracing::warn!(path = %self.path.display(), "history database re-opened after an I/O error");
        Ok(())
    }
}

impl Store {
    /// Opens or creates `<data>/history.redb` and starts the writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = open_db(path)?;
        crate::files::restrict_file(path).map_err(db_err)?;
        init_schema(&db, path)?;
        let db = Arc::new(Handle { path: path.to_owned(), db: RwLock::new(Some(Arc::new(db))) });
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_db = db.clone();
        thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer(writer_db, rx))
            .map_err(db_err)?;
        Ok(Self { db, tx, path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// After an I/O error redb refuses all work until re-opened: do that,
    /// so the next call (or this one's retry by its caller) works again.
    fn healed<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Db(m) | StoreError::Full(m)) = &r {
            if m.contains("I/O error") || m.contains("No space left") {
                if let Err(e) = self.db.reopen() {
                    tracing::error!(error = %e, "cannot re-open the history database");
                }
            }
        }
        r
    }

    pub fn get(&self, id: &str) -> Result<Option<ExecRecord>, StoreError> {
        self.healed(self.get_now(id))
    }

    pub fn active(&self) -> Result<Vec<ExecRecord>, StoreError> {
        self.healed(self.active_now())
    }

    pub fn list(&self, q: &Query) -> Result<(Vec<ExecRecord>, bool), StoreError> {
        self.list_visible(q, &|_| true)
    }

    /// Like `list`, counting only the records `visible` lets the caller see
    /// (so a page is full whenever more of them exist).
    pub fn list_visible(
        &self,
        q: &Query,
        visible: &dyn Fn(&ExecRecord) -> bool,
    ) -> Result<(Vec<ExecRecord>, bool), StoreError> {
        self.healed(self.list_now(q, visible))
    }

    pub fn to_compress(&self, before_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        self.healed(self.to_compress_now(before_ms, limit))
    }

    pub fn mark_compressed(&self, id: &str) -> Result<(), StoreError> {
        self.healed(self.mark_compressed_now(id))
    }

    pub fn prune_before(&self, cutoff: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.healed(self.prune_before_now(cutoff, limit))
    }

    /// Records a new execution, unless its caller's idempotency key was used
    /// before: then the earlier execution is returned and nothing is written.
    pub async fn create(&self, rec: ExecRecord) -> Result<Created, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::Create { rec: Box::new(rec), reply }).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Replaces an execution's record (durably, in order with other writes).
    pub async fn put(&self, rec: ExecRecord) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::Put { rec: Box::new(rec), reply }).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    fn get_now(&self, id: &str) -> Result<Option<ExecRecord>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(EXECUTIONS).map_err(db_err)?;
        let value = table.get(id).map_err(db_err)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// The execution a caller's idempotency key already names, if any.
    pub fn by_key(&self, caller: &str, key: &str) -> Result<Option<ExecRecord>, StoreError> {
        self.healed(self.by_key_now(caller, key))
    }

    fn by_key_now(&self, caller: &str, key: &str) -> Result<Option<ExecRecord>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(db_err)?;
        let idem = txn.open_table(IDEMPOTENCY).map_err(db_err)?;
        let Some(id) = idem.get(format!("{caller}\u{0}{key}").as_str()).map_err(db_err)? else {
            return Ok(None);
        };
        let execs = txn.open_table(EXECUTIONS).map_err(db_err)?;
        let value = execs.get(id.value()).map_err(db_err)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Executions the history still shows PENDING or RUNNING.
    fn active_now(&self) -> Result<Vec<ExecRecord>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(db_err)?;
        let active = txn.open_table(ACTIVE).map_err(db_err)?;
        let execs = txn.open_table(EXECUTIONS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in active.iter().map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            if let Some(v) = execs.get(k.value()).map_err(db_err)? {
                out.push(decode(v.value())?);
            }
        }
        Ok(out)
    }

    /// Newest first; returns the page and whether more match.
    fn list_now(&self, q: &Query, visible: &dyn Fn(&ExecRecord) -> bool) -> Result<(Vec<ExecRecord>, bool), StoreError> {
        let txn = self.db.get()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(EXECUTIONS).map_err(db_err)?;
        let iter = match &q.before {
            Some(b) => table.range::<&str>(..b.as_str()).map_err(db_err)?,
            None => table.range::<&str>(..).map_err(db_err)?,
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            let (_, v) = item.map_err(db_err)?;
            let rec = decode(v.value())?;
            if q.since_ms.is_some_and(|s| rec.created_at_ms < s) {
                // Ids are time-ordered: nothing older can match.
                break;
            }
            if !q.matches(&rec) || !visible(&rec) {
                continue;
            }
            if out.len() == q.limit {
                return Ok((out, true));
            }
            out.push(rec);
        }
        Ok((out, false))
    }

    /// Finished executions that ended before `before_ms` and whose output
    /// is not compressed yet, oldest first.
    fn to_compress_now(&self, before_ms: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let txn = self.db.get()?.begin_read().map_err(db_err)?;
        let table = txn.open_table(TO_COMPRESS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            if v.value() < before_ms {
                out.push(k.value().to_owned());
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Records that an execution's output is now compressed.
    fn mark_compressed_now(&self, id: &str) -> Result<(), StoreError> {
        let txn = self.db.get()?.begin_write().map_err(db_err)?;
        {
            let mut execs = txn.open_table(EXECUTIONS).map_err(db_err)?;
            let current = execs.get(id).map_err(db_err)?.map(|v| decode(v.value())).transpose()?;
            if let Some(mut rec) = current {
                rec.compressed = true;
                let bytes = serde_json::to_vec(&rec).map_err(db_err)?;
                execs.insert(id, bytes.as_slice()).map_err(db_err)?;
            }
            txn.open_table(TO_COMPRESS).map_err(db_err)?.remove(id).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    /// Deletes up to `limit` finished executions whose id sorts before
    /// `cutoff` (ids are time-ordered), with their idempotency keys; returns
    /// their ids so their folders can go too. Live executions are never pruned.
    fn prune_before_now(&self, cutoff: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let txn = self.db.get()?.begin_write().map_err(db_err)?;
        let mut pruned = Vec::new();
        {
            let mut execs = txn.open_table(EXECUTIONS).map_err(db_err)?;
            let active = txn.open_table(ACTIVE).map_err(db_err)?;
            let mut idem = txn.open_table(IDEMPOTENCY).map_err(db_err)?;
            let mut to_compress = txn.open_table(TO_COMPRESS).map_err(db_err)?;
            let mut victims = Vec::new();
            for item in execs.range::<&str>(..cutoff).map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                let id = k.value().to_owned();
                if active.get(id.as_str()).map_err(db_err)?.is_some() {
                    continue;
                }
                victims.push((id, decode(v.value())?));
                if victims.len() == limit {
                    break;
                }
            }
            for (id, rec) in victims {
                execs.remove(id.as_str()).map_err(db_err)?;
                to_compress.remove(id.as_str()).map_err(db_err)?;
                if !rec.idempotency_key.is_empty() {
                    let key = idem_key(&rec);
                    let owner = idem.get(key.as_str()).map_err(db_err)?.map(|v| v.value() == id);
                    if owner == Some(true) {
                        idem.remove(key.as_str()).map_err(db_err)?;
                    }
                }
                pruned.push(id);
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(pruned)
    }

    /// Every execution id in the history (for the startup sweep).
    pub fn contains(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.get(id)?.is_some())
    }
}

impl Query {
    fn matches(&self, r: &ExecRecord) -> bool {
        self.pack.as_ref().is_none_or(|p| *p == r.pack)
            && self.action.as_ref().is_none_or(|a| *a == r.action)
            && self.caller.as_ref().is_none_or(|c| *c == r.caller)
            && (self.states.is_empty() || self.states.contains(&r.state))
            && self.until_ms.is_none_or(|u| r.created_at_ms < u)
    }
}

/// redb's page cache; the history's hot part (live executions, recent
/// pages) is small, and an agent's memory must stay flat as history grows.
const CACHE_BYTES: usize = 1 << 20;

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(|e| classify(path, e))
}

fn classify(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(path.to_owned()),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::WouldBlock =>
        {
            StoreError::Locked(path.to_owned())
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            StoreError::Db(format!("{}: {io}", path.display()))
        }
        other => StoreError::Corrupt { path: path.to_owned(), reason: other.to_string() },
    }
}

fn init_schema(db: &Database, path: &Path) -> Result<(), StoreError> {
    // A history that has its schema and tables needs no write to open, so
    // an agent starts on a full data disk (to serve reads and kills).
    if let Ok(txn) = db.begin_read() {
        let version = txn.open_table(META).ok().and_then(|m| m.get("schema_version").ok().flatten().map(|v| v.value().to_owned()));
        let tables = txn.open_table(EXECUTIONS).is_ok()
            && txn.open_table(ACTIVE).is_ok()
            && txn.open_table(IDEMPOTENCY).is_ok()
            && txn.open_table(TO_COMPRESS).is_ok();
        match version {
            Some(v) if v != SCHEMA_VERSION => return Err(StoreError::Schema { path: path.to_owned(), found: v }),
            Some(_) if tables => return Ok(()),
            _ => {}
        }
    }
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut meta = txn.open_table(META).map_err(db_err)?;
        let found = meta.get("schema_version").map_err(db_err)?.map(|v| v.value().to_owned());
        match found {
            Some(v) if v != SCHEMA_VERSION => {
                return Err(StoreError::Schema { path: path.to_owned(), found: v })
            }
            Some(_) => {}
            None => {
                meta.insert("schema_version", SCHEMA_VERSION).map_err(db_err)?;
            }
        }
        txn.open_table(EXECUTIONS).map_err(db_err)?;
        txn.open_table(ACTIVE).map_err(db_err)?;
        txn.open_table(IDEMPOTENCY).map_err(db_err)?;
        txn.open_table(TO_COMPRESS).map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

fn decode(bytes: &[u8]) -> Result<ExecRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Db(format!("undecodable record: {e}")))
}

fn idem_key(rec: &ExecRecord) -> String {
    format!("{}\u{0}{}", rec.caller, rec.idempotency_key)
}

/// The writer thread: takes every queued write, applies them in one
/// transaction, commits once, then answers each.
fn writer(db: Arc<Handle>, mut rx: mpsc::UnboundedReceiver<Op>) {
    while let Some(first) = rx.blocking_recv() {
        let mut ops = vec![first];
        while ops.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let result = db.get().and_then(|d| apply(&d, &ops));
        let failure = result.as_ref().err().map(ToString::to_string);
        if let Some(f) = &failure {
            tracing::error!(error = %f, writes = ops.len(), "history commit failed");
            if let Err(e) = db.reopen() {
                tracing::error!(error = %e, "cannot re-open the history database; will retry");
            }
        }
        let mut outcomes = result.unwrap_or_default().into_iter();
        for op in ops {
            let outcome = outcomes.next();
            match op {
                Op::Create { reply, .. } => {
                    let r = match (&failure, outcome) {
                        (None, Some(Some(existing))) => Ok(Created::Existing(Box::new(existing))),
                        (None, _) => Ok(Created::New),
                        (Some(f), _) => Err(db_err(f)),
                    };
                    let _ = reply.send(r);
                }
                Op::Put { reply, .. } => {
                    let _ = reply.send(match &failure {
                        None => Ok(()),
                        Some(f) => Err(db_err(f)),
                    });
                }
            }
        }
    }
}

/// Applies a group of writes; for each Create, the existing record if its
/// idempotency key was taken.
fn apply(db: &Database, ops: &[Op]) -> Result<Vec<Option<ExecRecord>>, StoreError> {
    let txn = db.begin_write().map_err(db_err)?;
    let mut outcomes = Vec::with_capacity(ops.len());
    {
        let mut execs = txn.open_table(EXECUTIONS).map_err(db_err)?;
        let mut active = txn.open_table(ACTIVE).map_err(db_err)?;
        let mut idem = txn.open_table(IDEMPOTENCY).map_err(db_err)?;
        let mut to_compress = txn.open_table(TO_COMPRESS).map_err(db_err)?;
        for op in ops {
            let (rec, is_create) = match op {
                Op::Create { rec, .. } => (rec, true),
                Op::Put { rec, .. } => (rec, false),
            };
            if is_create && !rec.idempotency_key.is_empty() {
                let key = idem_key(rec);
                let prior = idem.get(key.as_str()).map_err(db_err)?.map(|v| v.value().to_owned());
                if let Some(prior_id) = prior {
                    let existing = execs
                        .get(prior_id.as_str())
                        .map_err(db_err)?
                        .map(|v| decode(v.value()))
                        .transpose()?;
                    if let Some(existing) = existing.filter(|e| !e.never_ran) {
                        outcomes.push(Some(existing));
                        continue;
                    }
                }
                idem.insert(key.as_str(), rec.id.as_str()).map_err(db_err)?;
            }
            let bytes = serde_json::to_vec(rec.as_ref()).map_err(db_err)?;
            execs.insert(rec.id.as_str(), bytes.as_slice()).map_err(db_err)?;
            if rec.state.is_terminal() {
                active.remove(rec.id.as_str()).map_err(db_err)?;
                if !rec.compressed {
                    let ended = rec.ended_at_ms.unwrap_or(rec.created_at_ms);
                    to_compress.insert(rec.id.as_str(), ended).map_err(db_err)?;
                }
            } else {
                active.insert(rec.id.as_str(), 1).map_err(db_err)?;
            }
            outcomes.push(None);
        }
    }
    txn.commit().map_err(db_err)?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, key: &str) -> ExecRecord {
        ExecRecord {
            id: id.into(),
            pack: "p".into(),
            action: "a".into(),
            caller: "me".into(),
            idempotency_key: key.into(),
            created_at_ms: 1000,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn create_put_get_and_idempotency() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&d.path().join("h.redb")).expect("open");
        assert!(matches!(s.create(rec("01", "k")).await, Ok(Created::New)));
        match s.create(rec("02", "k")).await {
            Ok(Created::Existing(r)) => assert_eq!(r.id, "01"),
            other => panic!("expected existing, got {other:?}"),
        }
        assert!(s.get("02").expect("get").is_none());
        assert_eq!(s.active().expect("active").len(), 1);
        let mut done = rec("01", "k");
        done.state = ExecState::Succeeded;
        s.put(done).await.expect("put");
        assert!(s.active().expect("active").is_empty());
        assert_eq!(s.get("01").expect("get").map(|r| r.state), Some(ExecState::Succeeded));
    }

    #[tokio::test]
    async fn a_key_whose_execution_never_ran_starts_a_new_one() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&d.path().join("h.redb")).expect("open");
        let mut first = rec("01", "k");
        first.state = ExecState::Failed;
        first.never_ran = true;
        assert!(matches!(s.create(first).await, Ok(Created::New)));
        assert!(matches!(s.create(rec("02", "k")).await, Ok(Created::New)), "the retry runs");
        assert_eq!(s.by_key("me", "k").expect("by_key").map(|r| r.id), Some("02".to_owned()));
        match s.create(rec("03", "k")).await {
            Ok(Created::Existing(r)) => assert_eq!(r.id, "02"),
            other => panic!("expected the retry's execution, got {other:?}"),
        }
        assert!(s.get("01").expect("get").is_some(), "the first record stays in the history");
    }

    #[tokio::test]
    async fn concurrent_creates_with_one_key_make_one_execution() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&d.path().join("h.redb")).expect("open");
        let futs: Vec<_> = (0..20).map(|i| s.create(rec(&format!("{i:02}"), "same"))).collect();
        let results = futures_util::future::join_all(futs).await;
        let new = results.iter().filter(|r| matches!(r, Ok(Created::New))).count();
        assert_eq!(new, 1);
    }

    #[tokio::test]
    async fn list_pages_newest_first_with_filters() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&d.path().join("h.redb")).expect("open");
        for i in 0..10 {
            let mut r = rec(&format!("{i:02}"), "");
            r.action = if i % 2 == 0 { "even".into() } else { "odd".into() };
            r.created_at_ms = 1000 + i;
            s.create(r).await.expect("create");
        }
        let q = Query { limit: 3, ..Default::default() };
        let (page, more) = s.list(&q).expect("list");
        assert_eq!(page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["09", "08", "07"]);
        assert!(more);
        let q =
            Query { limit: 10, before: Some("07".into()), action: Some("even".into()), ..Default::default() };
        let (page, more) = s.list(&q).expect("list");
        assert_eq!(page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["06", "04", "02", "00"]);
        assert!(!more);
        let q = Query { limit: 10, since_ms: Some(1005), until_ms: Some(1008), ..Default::default() };
        let (page, _) = s.list(&q).expect("list");
        assert_eq!(page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["07", "06", "05"]);
    }

    #[tokio::test]
    async fn compression_queue_and_pruning() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&d.path().join("h.redb")).expect("open");
        for i in 0..5u64 {
            let mut r = rec(&format!("{i:02}"), &format!("k{i}"));
            s.create(r.clone()).await.expect("create");
            if i < 4 {
                r.state = ExecState::Succeeded;
                r.ended_at_ms = Some(100 + i);
                s.put(r).await.expect("put");
            }
        }
        assert_eq!(s.to_compress(102, 10).expect("q"), ["00", "01"]);
        s.mark_compressed("00").expect("mark");
        assert_eq!(s.to_compress(1000, 10).expect("q"), ["01", "02", "03"]);
        assert!(s.get("00").expect("get").is_some_and(|r| r.compressed));
        // "04" is live: never pruned even though it is older than the cutoff.
        assert_eq!(s.prune_before("99", 2).expect("prune"), ["00", "01"]);
        assert_eq!(s.prune_before("99", 10).expect("prune"), ["02", "03"]);
        assert!(s.prune_before("99", 10).expect("prune").is_empty());
        assert!(s.get("04").expect("get").is_some());
        assert!(s.to_compress(1000, 10).expect("q").is_empty());
        // A pruned execution's idempotency key is free again.
        assert!(matches!(s.create(rec("05", "k1")).await, Ok(Created::New)));
    }

    #[test]
    fn a_second_opener_gets_a_clear_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("h.redb");
        let _first = Store::open(&p).expect("open");
        let err = Store::open(&p).err().expect("locked");
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn garbage_gives_a_clear_error() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("h.redb");
        std::fs::write(&p, vec![0x5au8; 8192]).expect("write");
        let err = Store::open(&p).err().expect("corrupt");
        assert!(err.to_string().contains("history database"), "{err}");
    }
}
