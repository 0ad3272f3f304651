//! Opening a history: the file checked before SQLite sees it, the schema version checked
//! before anything is read or written.

use std::path::Path;

use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use shared::outfile::{self, OpenError, Policy};

use crate::schema::{schema, SCHEMA_VERSION};

#[derive(Debug)]
pub enum StoreError {
    /// The file could not be created or opened (path, reason).
    Open(String, String),
    /// The database has another schema version, or is not ours.
    Schema(String),
    /// Another process holds the write lock.
    Locked(String),
    Sql(rusqlite::Error),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Open(p, e) => write!(f, "{p}: cannot open database: {e}"),
            StoreError::Schema(m) => f.write_str(m),
            StoreError::Locked(p) => {
                write!(f, "{p}: database is locked by another process")
            }
            StoreError::Sql(e) => write!(f, "SQLite: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e)
    }
}

/// it, a regular file) and opens it with SQLite under a name SQLite cannot be led away from.
pub fn open_sqlite(path: &Path, policy: &Policy, shown: &str) -> Result<Connection, StoreError> {
    let open_err = |p: &Path, e: &dyn std::fmt::Display| {
        StoreError::Open(
            shared::text::escaped(&p.to_string_lossy()).into_owned(),
            e.to_string(),
        )
    };
    let checked = outfile::open_rw(path, policy).map_err(|e| open_err(path, &e))?;
    // Closed before SQLite opens the file: closing any descriptor of a file drops every POSIX
    // lock this process holds on it, SQLite's included.
    drop(checked.file);
    let (name, flags) = if policy.follow_symlinks {
        (path.to_path_buf(), OpenFlags::default())
    } else {
        // SQLite resolves symbolic links in the name it is given and opens the target; with
        // NOFOLLOW it refuses a link anywhere in the name instead. So the directory is resolved
        // here and SQLite gets a name whose only component that could still become a link is
        // the last one, which it then refuses (and opens with O_NOFOLLOW).
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file = path
            .file_name()
            .ok_or_else(|| open_err(path, &"not a file name"))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| open_err(path, &e))?;
        (
            dir.join(file),
            OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
    };
    // SQLite creates and opens these by name beside the database (the resolved one when
    // following a link); it uses O_NOFOLLOW, but a planted link would only give an obscure
    // "unable to open database file".
    let base = if policy.follow_symlinks {
        std::fs::canonicalize(path).map_err(|e| open_err(path, &e))?
    } else {
        name.clone()
    };
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = base.clone().into_os_string();
        side.push(suffix);
        let side = std::path::PathBuf::from(side);
        outfile::check_side_file(&side).map_err(|e| open_err(&side, &e))?;
    }
    Connection::open_with_flags(&name, flags).map_err(|e| {
        let symlink = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CANTOPEN_SYMLINK
        );
        if symlink {
            StoreError::Open(shown.to_string(), OpenError::Symlink.to_string())
        } else {
            StoreError::Open(shown.to_string(), e.to_string())
        }
    })
}

/// Opens an existing history read-only (constat), checking its schema version.
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let shown = path.display().to_string();
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| StoreError::Open(shown.clone(), e.to_string()))?;
    if check_version(&conn, &shown, false)? < SCHEMA_VERSION {
        read_older(&conn)?;
    }
    Ok(conn)
}

/// The oldest schema version this code still reads (and upgrades when it writes). Every
/// version since only added nullable columns and tables, so an older file is a subset.
pub const OLDEST_READABLE: i64 = 1;

/// Checks the file's schema version: this one, an older one this code can read and upgrade
/// ([`OLDEST_READABLE`]..), or, with `may_create`, an empty file (0).
fn check_version(conn: &Connection, shown: &str, may_create: bool) -> Result<i64, StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::Open(shown.to_string(), e.to_string()))?;
    if (OLDEST_READABLE..=SCHEMA_VERSION).contains(&version) {
        return Ok(version);
    }
    if version == 0 {
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if tables == 0 && may_create {
            return Ok(0);
        }
        return Err(StoreError::Schema(format!(
            "{shown}: not an ipclog database (no schema version, {tables} tables)"
        )));
    }
    Err(StoreError::Schema(format!(
        "{shown}: schema version {version}, this ipclog reads version {SCHEMA_VERSION}"
    )))
}

fn lock_or_open(shown: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Locked(shown.to_string())
        }
        _ => StoreError::Open(shown.to_string(), e.to_string()),
    }
}

/// Connection-level settings for a writer that takes floods of rows and their three indexes: a
/// 64 MiB page cache so index pages are not re-read, and rarer checkpoints (64 MiB of WAL) so
/// an index page changed by many batches is copied back to the database once, not per batch.
/// Durability is unchanged: WAL, one transaction per batch, `synchronous = NORMAL`.
const TUNING: &str = "PRAGMA synchronous = NORMAL;
    PRAGMA cache_size = -65536;
    PRAGMA wal_autocheckpoint = 16384;";

/// Opens (creating if needed) the history at `path` for writing and checks now, not an hour
/// later, that it is ours, of this version, and writable: WAL journal, the tables created
/// where missing, the schema version set.
pub(crate) fn open_for_writing(path: &Path, policy: &Policy) -> Result<Connection, StoreError> {
    let shown = path.display().to_string();
    let conn = open_sqlite(path, policy, &shown)?;
    conn.busy_timeout(Duration::from_millis(2000))?;
    check_version(&conn, &shown, true)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| lock_or_open(&shown, e))?;
    if mode != "wal" {
        return Err(StoreError::Open(
            shown,
            format!("cannot use WAL journal (got {mode})"),
        ));
    }
    conn.execute_batch(TUNING)?;
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| lock_or_open(&shown, e))?;
    for (name, decl) in missing_columns(&conn)? {
        conn.execute_batch(&format!("ALTER TABLE connections ADD COLUMN {name} {decl}"))?;
    }
    conn.execute_batch(&schema())?;
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    conn.execute_batch("COMMIT")?;
    Ok(conn)
}

/// The columns of this version's `connections` that the file's table lacks (none for a new
/// file, whose table does not exist yet): those added since the file's version.
fn missing_columns(conn: &Connection) -> Result<Vec<(&'static str, &'static str)>, StoreError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('connections')")?;
    let present = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<String>, _>>()?;
    if present.is_empty() {
        return Ok(Vec::new());
    }
    Ok(crate::schema::COLUMNS
        .iter()
        .map(|&i| &shared::record::FIELDS[i])
        .filter(|f| !present.iter().any(|p| p == f.name))
        .map(|f| (f.name, f.sql.expect("a column").decl))
        .collect())
}

/// Lets a read-only connection read an older file as if it were of this version: the columns
/// added since read as NULL through a temporary view of the same name (temporary objects are
/// found before the file's own), and tables added since exist, empty, as temporary tables.
/// Nothing is written to the file.
fn read_older(conn: &Connection) -> Result<(), StoreError> {
    let missing = missing_columns(conn)?;
    if !missing.is_empty() {
        let nulls: Vec<String> = missing
            .iter()
            .map(|(name, _)| format!("NULL AS {name}"))
            .collect();
        conn.execute_batch(&format!(
            "CREATE TEMP VIEW connections AS SELECT *, {} FROM main.connections",
            nulls.join(", ")
        ))?;
    }
    let has_packets: bool = conn.query_row(
        "SELECT count(*) > 0 FROM main.sqlite_master WHERE type = 'table' AND name = 'packets'",
        [],
        |r| r.get(0),
    )?;
    if !has_packets {
        let table = crate::packets::PACKETS
            .split("CREATE INDEX")
            .next()
            .expect("the table comes first");
        conn.execute_batch(&table.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))?;
    }
    Ok(())
}
