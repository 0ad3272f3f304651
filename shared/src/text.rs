//! Safe text for terminals and logs. Every name the tools print may come from somewhere an
//! attacker controls (an interface name, a reverse-DNS answer, a lookup file, a log or database
//! row), and a terminal obeys the control characters inside it: `ESC ] 0 ; … BEL` retitles the
//! window, `ESC [ 7 m` recolours it, U+202E turns the rest of a line around. So every text
//! output passes foreign strings through [`push_escaped`] (messages) or [`push_field`] (one
//! whitespace-separated column of the line log, where a space would shift the columns).
//!
//! Escapes: bytes below 0x20, 0x7f and the C1 controls U+0080–U+009F become `\xHH`; the Unicode
//! bidirectional controls U+202A–U+202E and U+2066–U+2069 become `\uXXXX`. In a field a space
//! and a backslash become `\x20` and `\x5c` as well, so a field never splits and an escape read
//! back is never ambiguous.

use std::borrow::Cow;

/// True for the bidirectional formatting characters that reorder how a line is shown.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// How `c` must be written, or `None` when it is printed as it is.
fn escape_of(c: char, field: bool) -> Option<Escape> {
    if c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c) || (field && (c == ' ' || c == '\\')) {
        Some(Escape::Byte(c as u32 as u8))
    } else if is_bidi_control(c) {
        Some(Escape::Unicode(c as u32))
    } else {
        None
    }
}

enum Escape {
    Byte(u8),
    Unicode(u32),
}

fn push_escape(e: Escape, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match e {
        Escape::Byte(b) => {
            out.push_str("\\x");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
        Escape::Unicode(u) => {
            out.push_str("\\u");
            for shift in [12, 8, 4, 0] {
                out.push(HEX[((u >> shift) & 15) as usize] as char);
            }
        }
    }
}

fn push_with(s: &str, field: bool, out: &mut String) {
    // The common case (plain ASCII names) is one copy.
    if !s.chars().any(|c| escape_of(c, field).is_some()) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match escape_of(c, field) {
            Some(e) => push_escape(e, out),
            None => out.push(c),
        }
    }
}

/// Appends `s` with its control and bidi characters escaped (for messages and free text).
pub fn push_escaped(s: &str, out: &mut String) {
    push_with(s, false, out);
}

/// Appends `s` as one field of a whitespace-separated line: as [`push_escaped`], and spaces
/// and backslashes escaped too.
pub fn push_field(s: &str, out: &mut String) {
    push_with(s, true, out);
}

fn escaped_with(s: &str, field: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| escape_of(c, field).is_some()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    push_with(s, field, &mut out);
    Cow::Owned(out)
}

/// `s` with its control and bidi characters escaped; borrowed when nothing needed it.
pub fn escaped(s: &str) -> Cow<'_, str> {
    escaped_with(s, false)
}

/// `s` escaped as one field (see [`push_field`]); borrowed when nothing needed it.
pub fn field(s: &str) -> Cow<'_, str> {
    escaped_with(s, true)
}

/// Bytes that may not be UTF-8 (a path, a raw line), shown lossily and escaped.
pub fn escaped_bytes(b: &[u8]) -> String {
    escaped(&String::from_utf8_lossy(b)).into_owned()
}

/// Reads back what [`push_field`] wrote: `\xHH` is the character U+00HH, `\uHHHH` the
/// character U+HHHH. A backslash that starts no such escape is kept as it is, so text written
/// before fields were escaped reads as it always did. Borrowed when `s` has no backslash.
pub fn unescape_field(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let hex = |h: &str| u32::from_str_radix(h, 16).ok().and_then(char::from_u32);
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = match rest.as_bytes().get(1) {
            Some(b'x') => rest
                .get(2..4)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(hex)
                .map(|c| (c, 4)),
            Some(b'u') => rest
                .get(2..6)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(hex)
                .map(|c| (c, 6)),
            _ => None,
        };
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('\\');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_and_bidi_are_escaped() {
        assert_eq!(
            escaped("\u{1b}]0;PWN\u{7}\u{1b}[7m"),
            "\\x1b]0;PWN\\x07\\x1b[7m"
        );
        assert_eq!(escaped("a\u{202e}b\u{2066}"), "a\\u202eb\\u2066");
        assert_eq!(escaped("del\u{7f} csi\u{9b}"), "del\\x7f csi\\x9b");
        assert_eq!(escaped("tab\there\nnl"), "tab\\x09here\\x0anl");
        assert!(matches!(escaped("eth0 ok é"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_field_never_splits() {
        assert_eq!(field("my host"), "my\\x20host");
        assert_eq!(field("a\\x20"), "a\\x5cx20");
        assert_eq!(field("eth0"), "eth0");
        assert!(!field("a b\tc\u{1b}").contains(|c: char| c.is_whitespace() || c.is_control()));
    }

    #[test]
    fn bytes_are_shown_lossily() {
        assert_eq!(escaped_bytes(b"ok\xff\x1b"), "ok\u{fffd}\\x1b");
    }

    #[test]
    fn fields_read_back_as_written() {
        for s in [
            "\u{1b}]0;PWN\u{7}\u{1b}[7m",
            "my host\\x20",
            "a\u{202e}b\u{9b}",
            "plain",
            "tr\\",
        ] {
            assert_eq!(unescape_field(&field(s)), s);
        }
        // A backslash that starts no escape (a log written before escaping) stays.
        assert_eq!(unescape_field("a\\qb\\x4"), "a\\qb\\x4");
        assert_eq!(unescape_field("\\ud800"), "\\ud800");
        assert!(matches!(unescape_field("eth0"), Cow::Borrowed(_)));
    }
}
