//! The tables and the statements that write them. The `connections` columns are those of
//! [`shared::record::FIELDS`] that have one, after the table's own `id` and `run_id`; which
//! columns each statement binds, in which order, is worked out from the same list when the
//! crate is built ([`OPEN`], [`LATER`], [`CHANGED`]), and the statements' text once at run time.

use std::sync::OnceLock;

use shared::record::{Bind, Field, FIELDS};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i64 = 2;

const RUNS: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY,
    started     REAL NOT NULL,
    stopped     REAL,
    source      TEXT NOT NULL,
    command     TEXT NOT NULL,
    errors      INTEGER NOT NULL DEFAULT 0,
    lost_events INTEGER NOT NULL DEFAULT 0,
    dropped     INTEGER NOT NULL DEFAULT 0
);";

/// Each index is one short key: every index costs every insert a B-tree descent, and under a
/// flood the host indexes are written at random places.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS connections_day ON connections(day);
CREATE INDEX IF NOT EXISTS connections_orig_h ON connections(orig_h);
CREATE INDEX IF NOT EXISTS connections_resp_h ON connections(resp_h);
";

/// Opens inserted by one statement: fewer statement executions (each opens B-tree cursors on
/// the table and its three indexes and resets its registers).
pub const INSERT_ROWS: usize = 8;

/// Which columns a list holds.
#[derive(Clone, Copy)]
enum Kind {
    /// All of them.
    Column,
    /// Bound by the INSERT of a row's first event (not those SQL computes).
    Open,
    /// Left to later events.
    Later,
    /// Changed by later events.
    Changed,
}

const fn is(f: &Field, kind: Kind) -> bool {
    match f.sql {
        None => false,
        Some(c) => match kind {
            Kind::Column => true,
            Kind::Open => c.set.at_open() && !matches!(c.bind, Bind::Coalesce(_)),
            Kind::Later => !c.set.at_open(),
            Kind::Changed => c.set.changes(),
        },
    }
}

const fn count(kind: Kind) -> usize {
    let (mut n, mut i) = (0, 0);
    while i < FIELDS.len() {
        if is(&FIELDS[i], kind) {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The indexes in [`FIELDS`] of the columns of `kind`, in table order.
const fn pick<const N: usize>(kind: Kind) -> [usize; N] {
    let mut out = [0; N];
    let (mut n, mut i) = (0, 0);
    while i < FIELDS.len() {
        if is(&FIELDS[i], kind) {
            out[n] = i;
            n += 1;
        }
        i += 1;
    }
    assert!(n == N);
    out
}

/// The columns, in table order (indexes in [`FIELDS`]).
pub const COLUMNS: [usize; count(Kind::Column)] = pick(Kind::Column);
/// The parameters of a row's INSERT after `run_id`: the columns its first event sets.
pub const OPEN: [usize; count(Kind::Open)] = pick(Kind::Open);
/// The columns a full INSERT binds after [`OPEN`]: those only later events set.
pub const LATER: [usize; count(Kind::Later)] = pick(Kind::Later);
/// The parameters of a row's full INSERT after `run_id`: [`OPEN`], then [`LATER`].
pub const FULL: [usize; OPEN.len() + LATER.len()] = {
    let mut out = [0; OPEN.len() + LATER.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = if i < OPEN.len() {
            OPEN[i]
        } else {
            LATER[i - OPEN.len()]
        };
        i += 1;
    }
    out
};
/// The columns later events change: the UPDATE's parameters after the row id, and the
/// values a row kept in memory merges.
pub const CHANGED: [usize; count(Kind::Changed)] = pick(Kind::Changed);

/// Where field `field` is among [`CHANGED`].
pub const fn changed_slot(field: usize) -> Option<usize> {
    let mut i = 0;
    while i < CHANGED.len() {
        if CHANGED[i] == field {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Both tables and their indexes, created where missing.
pub fn schema() -> String {
    let mut s = String::from(RUNS);
    s.push_str("\nCREATE TABLE IF NOT EXISTS connections (\n");
    s.push_str("    id             INTEGER PRIMARY KEY,\n");
    s.push_str("    run_id         INTEGER REFERENCES runs(id)");
    for &i in &COLUMNS {
        let (f, c) = (&FIELDS[i], FIELDS[i].sql.expect("a column"));
        s.push_str(&format!(",\n    {:<14} {}", f.name, c.decl));
    }
    s.push_str("\n);");
    s.push_str(INDEXES);
    s
}

/// The statements the writer prepares. An INSERT's first parameter is the row's `run_id`,
/// [`OPEN`] follow from `?2` (and [`LATER`] in the full INSERT); the UPDATE's first is the row
/// id, [`CHANGED`] follow.
pub struct Statements {
    /// A row as its first event leaves it.
    pub insert: String,
    /// [`INSERT_ROWS`] such rows; row `j`'s parameters are those of `insert` plus `j` times
    /// [`INSERT_WIDTH`].
    pub insert_many: String,
    /// A row with the columns later events changed as well.
    pub insert_full: String,
    /// A later event's changes to a row written before.
    pub update: String,
}

/// Parameters per row of [`Statements::insert`].
pub const INSERT_WIDTH: usize = 1 + OPEN.len();

impl Statements {
    pub fn get() -> &'static Statements {
        static S: OnceLock<Statements> = OnceLock::new();
        S.get_or_init(Statements::build)
    }

    fn build() -> Statements {
        let at_open: Vec<&Field> = COLUMNS
            .iter()
            .map(|&i| &FIELDS[i])
            .filter(|f| f.sql.is_some_and(|c| c.set.at_open()))
            .collect();
        let later: Vec<&Field> = LATER.iter().map(|&i| &FIELDS[i]).collect();
        let all: Vec<&Field> = at_open.iter().chain(&later).copied().collect();
        let names = |cols: &[&Field]| {
            let names: Vec<&str> = cols.iter().map(|f| f.name).collect();
            names.join(", ")
        };
        let head =
            |cols: &[&Field]| format!("INSERT INTO connections (run_id, {}) VALUES ", names(cols));
        let many: Vec<String> = (0..INSERT_ROWS)
            .map(|j| values(&at_open, j * INSERT_WIDTH))
            .collect();
        let sets: Vec<String> = CHANGED
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let (name, n) = (FIELDS[i].name, k + 2);
                match FIELDS[i].sql.is_some_and(|c| c.set.keeps()) {
                    true => format!("{name} = coalesce(?{n}, {name})"),
                    false => format!("{name} = ?{n}"),
                }
            })
            .collect();
        Statements {
            insert: format!("{}{}", head(&at_open), values(&at_open, 0)),
            insert_many: format!("{}{}", head(&at_open), many.join(",\n    ")),
            insert_full: format!("{}{}", head(&all), values(&all, 0)),
            update: format!("UPDATE connections SET {} WHERE id = ?1", sets.join(", ")),
        }
    }
}

/// `(?1, ?2, ?3, coalesce(?5, ?3), ...)` for one row of an INSERT of `cols`: `run_id` as
/// `?(offset + 1)`, then [`OPEN`] and [`LATER`] in turn, and the computed columns from their
/// parameters.
fn values(cols: &[&Field], offset: usize) -> String {
    let number = |name: &str| {
        let i = FULL
            .iter()
            .position(|&i| FIELDS[i].name == name)
            .unwrap_or_else(|| panic!("{name} is not a parameter"));
        format!("?{}", offset + i + 2)
    };
    let items: Vec<String> = cols
        .iter()
        .map(|f| match f.sql.map(|c| c.bind) {
            Some(Bind::Coalesce(names)) => {
                let numbers: Vec<String> = names.iter().map(|n| number(n)).collect();
                format!("coalesce({})", numbers.join(", "))
            }
            _ => number(f.name),
        })
        .collect();
    format!("(?{}, {})", offset + 1, items.join(", "))
}
