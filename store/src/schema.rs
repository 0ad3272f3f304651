//! The tables and the statements that write them. The `connections` columns are those of
//! [`shared::record::FIELDS`] that have one, after the table's own `id` and `run_id`; the
//! INSERT and UPDATE statements and the order their parameters are bound in are generated from
//! the same list, once.

use std::sync::OnceLock;

use shared::record::{Bind, Column, Field, FIELDS};

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

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

/// The history's columns: fields that have one.
fn columns() -> impl Iterator<Item = (&'static Field, Column)> {
    FIELDS.iter().filter_map(|f| f.sql.map(|c| (f, c)))
}

/// Both tables and their indexes, created where missing.
pub fn schema() -> String {
    let mut s = String::from(RUNS);
    s.push_str("\nCREATE TABLE IF NOT EXISTS connections (\n");
    s.push_str("    id             INTEGER PRIMARY KEY,\n");
    s.push_str("    run_id         INTEGER REFERENCES runs(id)");
    for (f, c) in columns() {
        s.push_str(&format!(",\n    {:<14} {}", f.name, c.decl));
    }
    s.push_str("\n);");
    s.push_str(INDEXES);
    s
}

/// One parameter of a statement: the column it fills, and for a column that later events
/// change, its place among [`Statements::changed`].
#[derive(Clone, Copy)]
pub struct Param {
    pub field: &'static Field,
    pub column: Column,
    pub changed: Option<usize>,
}

/// The statements the writer prepares, with their parameters in order. An INSERT's first
/// parameter is the row's `run_id`, the fields' follow from `?2`.
pub struct Statements {
    /// A row as its first event leaves it.
    pub insert: String,
    /// [`INSERT_ROWS`] such rows; row `j`'s parameters are those of `insert` plus `j` times
    /// [`Statements::insert_width`].
    pub insert_many: String,
    pub insert_params: Vec<Param>,
    /// Parameters per row of `insert`: `run_id` and `insert_params`.
    pub insert_width: usize,
    /// A row with the columns later events changed as well.
    pub insert_full: String,
    pub full_params: Vec<Param>,
    /// A later event's changes to a row written before: `?1` is the row id, the columns'
    /// parameters follow.
    pub update: String,
    pub update_params: Vec<Param>,
    /// The columns later events change: what a row kept in memory merges.
    pub changed: Vec<Param>,
}

impl Statements {
    pub fn get() -> &'static Statements {
        static S: OnceLock<Statements> = OnceLock::new();
        S.get_or_init(Statements::build)
    }

    fn build() -> Statements {
        let changed_fields: Vec<&Field> = columns()
            .filter(|(_, c)| c.set.changes())
            .map(|(f, _)| f)
            .collect();
        let param = |(f, c): (&'static Field, Column)| Param {
            field: f,
            column: c,
            changed: changed_fields.iter().position(|g| g.name == f.name),
        };
        let at_open: Vec<(&Field, Column)> = columns().filter(|(_, c)| c.set.at_open()).collect();
        let later: Vec<(&Field, Column)> = columns().filter(|(_, c)| !c.set.at_open()).collect();
        let bound = |cols: &[(&'static Field, Column)]| -> Vec<Param> {
            cols.iter()
                .filter(|(_, c)| !matches!(c.bind, Bind::Coalesce(_)))
                .map(|&fc| param(fc))
                .collect()
        };
        let insert_params = bound(&at_open);
        let all: Vec<_> = at_open.iter().chain(&later).copied().collect();
        let full_params = bound(&all);
        let names = |cols: &[(&Field, Column)]| {
            cols.iter()
                .map(|(f, _)| f.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let insert_head = format!(
            "INSERT INTO connections (run_id, {}) VALUES ",
            names(&at_open)
        );
        let insert_width = insert_params.len() + 1;
        let many: Vec<String> = (0..INSERT_ROWS)
            .map(|j| values(&at_open, &insert_params, j * insert_width))
            .collect();
        let changed: Vec<Param> = columns()
            .filter(|(_, c)| c.set.changes())
            .map(param)
            .collect();
        let sets: Vec<String> = changed
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (name, n) = (p.field.name, i + 2);
                if p.column.set.keeps() {
                    format!("{name} = coalesce(?{n}, {name})")
                } else {
                    format!("{name} = ?{n}")
                }
            })
            .collect();
        Statements {
            insert: format!("{insert_head}{}", values(&at_open, &insert_params, 0)),
            insert_many: format!("{insert_head}{}", many.join(",\n    ")),
            insert_full: format!(
                "INSERT INTO connections (run_id, {}) VALUES {}",
                names(&all),
                values(&all, &full_params, 0)
            ),
            update: format!("UPDATE connections SET {} WHERE id = ?1", sets.join(", ")),
            update_params: changed.clone(),
            insert_params,
            insert_width,
            full_params,
            changed,
        }
    }
}

/// `(?1, ?2, ?3, coalesce(?5, ?3), ...)`: `run_id` as `?(offset + 1)`, then the parameters of
/// `params` and the computed columns among `cols`.
fn values(cols: &[(&Field, Column)], params: &[Param], offset: usize) -> String {
    let number = |name: &str| {
        let i = params
            .iter()
            .position(|p| p.field.name == name)
            .unwrap_or_else(|| panic!("computed column refers to {name}, not a parameter"));
        format!("?{}", offset + i + 2)
    };
    let items: Vec<String> = cols
        .iter()
        .map(|(f, c)| match c.bind {
            Bind::Coalesce(names) => {
                let numbers: Vec<String> = names.iter().map(|n| number(n)).collect();
                format!("coalesce({})", numbers.join(", "))
            }
            _ => number(f.name),
        })
        .collect();
    format!("(?{}, {})", offset + 1, items.join(", "))
}
