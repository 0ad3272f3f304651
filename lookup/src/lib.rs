//! Names for addresses, networks and services, from the constat lookup file, plus a reverse-DNS
//! name cache. constat's report is only useful when known hosts carry names and unknown ones
//! stand out, so this crate answers two questions: "what does the user call this address /
//! port?" ([`Lookup`], [`Services`]) and "what did DNS once say about it?" ([`NameCache`]). The
//! two are kept apart on purpose: a name from the lookup file is the user's word, a name from
//! the cache is only a hint and is shown as such (with a trailing `?`). Nothing here needs DNS
//! unless the caller asks for [`resolve`].
//!
//! Lookup file format (see `lookup/constat.lookup`): `#` starts a comment; `ADDRESS NAME`,
//! `CIDR NAME` (IPv4 or IPv6, the longest prefix wins, a host line beats any network) and
//! `PORT/PROTO NAME` (a service, overriding `/etc/services` and the built-in table). A bad line
//! (including one that is not UTF-8) is reported as `file:line: reason` and skipped. The same
//! address, network or service named twice: the first line wins, for all three kinds, and the
//! later one is reported as `file:N: duplicate of line M: ...`.
//!
//! [`names`] reads the lookup file, [`services`] the service names (built-in and
//! `/etc/services`), [`cache`] keeps the reverse-DNS names between runs.

use std::fmt;

use shared::text::escaped;

pub mod cache;
pub mod names;
pub mod services;

pub use cache::{resolve, NameCache, DEFAULT_CACHE};
pub use names::Lookup;
pub use services::Services;

/// A line of a lookup, services or cache file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for Warning {
    /// Escaped: the file name and the quoted line are foreign text bound for a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}",
            escaped(&self.file),
            self.line,
            escaped(&self.reason)
        )
    }
}

/// The lines of a file as bytes, numbered from 1 and without their `\n` (or `\r\n`), so that
/// each line is decoded on its own: one bad byte costs one line, not the file.
fn byte_lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !bytes.is_empty())
        .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l)))
}

/// A line as text, or the warning that skips it.
fn utf8_line<'a>(raw: &'a [u8], file: &str, line: u64) -> Result<&'a str, Warning> {
    std::str::from_utf8(raw).map_err(|e| Warning {
        file: file.to_string(),
        line,
        reason: format!("not UTF-8 text (byte {} of the line)", e.valid_up_to() + 1),
    })
}

/// A name as the files may give one: not empty, no control character, no space.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_escape_what_they_quote() {
        let (_, w) = Lookup::parse("1.2.3.4 a\u{1b}[7m\n", "evil\u{202e}.lookup");
        let s = w[0].to_string();
        assert!(!s.contains(['\u{1b}', '\u{202e}']), "{s:?}");
        assert!(s.starts_with("evil\\u202e.lookup:1: bad name"), "{s}");
    }
}
