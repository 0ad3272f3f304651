//! Zeek's history string: one letter per notable event, upper case for the originator, lower
//! case for the responder. Some letters are recorded once per endpoint (Zeek's CheckHistory),
//! some again at the 1st, 10th, 100th, ... occurrence (Zeek's ScaledHistoryEntry).

/// History letters, at most 64 (Zeek's rules keep real histories far shorter).
#[derive(Debug, Clone)]
pub(super) struct History {
    buf: [u8; 64],
    len: u8,
}

impl History {
    pub(super) fn new() -> History {
        History {
            buf: [0; 64],
            len: 0,
        }
    }

    pub(super) fn push(&mut self, c: u8) {
        if (self.len as usize) < self.buf.len() {
            self.buf[self.len as usize] = c;
            self.len += 1;
        }
    }

    /// Pushes `c` as endpoint `d`'s letter (0 originator: as given, 1 responder: lower case).
    #[inline]
    pub(super) fn push_for(&mut self, d: usize, c: u8) {
        self.push(if d == 0 { c } else { c.to_ascii_lowercase() });
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

/// What an endpoint's once-only letters record (bits of [`Once`]); the letter itself may
/// vary (a SYN is `S`, or `H` with an ACK).
#[derive(Debug, Clone, Copy)]
#[repr(u16)]
pub(super) enum Once {
    Syn = 1,
    Fin = 2,
    Rst = 4,
    FinRst = 8,
    MultiFlag = 16,
    Data = 32,
    Ack = 64,
}

/// The once-only letters an endpoint has recorded.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct OnceSeen(u16);

impl OnceSeen {
    /// Zeek's CheckHistory: true when `what` was recorded already, else records it (the
    /// caller pushes the letter).
    #[inline]
    pub(super) fn check(&mut self, what: Once) -> bool {
        let bit = what as u16;
        if self.0 & bit != 0 {
            return true;
        }
        self.0 |= bit;
        false
    }
}

/// The letters recorded again at the 1st, 10th, 100th, ... occurrence, each with its count.
#[derive(Debug, Clone, Copy)]
pub(super) enum Repeat {
    /// `T`: a data retransmission.
    Retransmit = 0,
    /// `W`: a zero window.
    ZeroWindow,
    /// `C`: a bad checksum.
    BadChecksum,
    /// `G`: a content gap.
    ContentGap,
}

impl Repeat {
    fn letter(self) -> u8 {
        match self {
            Repeat::Retransmit => b'T',
            Repeat::ZeroWindow => b'W',
            Repeat::BadChecksum => b'C',
            Repeat::ContentGap => b'G',
        }
    }
}

/// An endpoint's count of each [`Repeat`] and the count at which its letter is due next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Repeats([(u32, u32); 4]);

impl Repeats {
    pub(super) fn new() -> Repeats {
        Repeats([(0, 1); 4])
    }

    /// Zeek's ScaledHistoryEntry: counts one more `what` for endpoint `d` and pushes its
    /// letter when the count reaches 1, 10, 100, ...
    #[inline]
    pub(super) fn count(&mut self, what: Repeat, d: usize, hist: &mut History) {
        let (n, due) = &mut self.0[what as usize];
        *n = n.saturating_add(1);
        if *n == *due {
            *due = due.saturating_mul(10);
            hist.push_for(d, what.letter());
        }
    }
}

/// `/^\^?S[^HAFGIQ]*R.*/`: an originator SYN followed by its RST with nothing from it between
/// (Zeek's test for RSTOS0).
pub(super) fn rstos0_history(h: &str) -> bool {
    let h = h.strip_prefix('^').unwrap_or(h);
    let Some(rest) = h.strip_prefix('S') else {
        return false;
    };
    for c in rest.chars() {
        if c == 'R' {
            return true;
        }
        if "HAFGIQ".contains(c) {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rstos0_pattern() {
        assert!(rstos0_history("SR"));
        assert!(rstos0_history("^SsR"));
        assert!(!rstos0_history("SAR"));
        assert!(!rstos0_history("hR"));
    }

    #[test]
    fn repeated_letters_at_powers_of_ten_per_endpoint() {
        let mut h = History::new();
        let (mut orig, mut resp) = (Repeats::new(), Repeats::new());
        for _ in 0..100 {
            orig.count(Repeat::Retransmit, 0, &mut h);
        }
        for _ in 0..10 {
            resp.count(Repeat::ContentGap, 1, &mut h);
        }
        orig.count(Repeat::ZeroWindow, 0, &mut h);
        resp.count(Repeat::BadChecksum, 1, &mut h);
        assert_eq!(h.as_str(), "TTTggWc");
    }

    #[test]
    fn once_letters_are_once_per_kind() {
        let mut seen = OnceSeen::default();
        assert!(!seen.check(Once::Syn));
        assert!(seen.check(Once::Syn));
        assert!(!seen.check(Once::Ack));
        assert!(seen.check(Once::Syn) && seen.check(Once::Ack));
        assert!(!seen.check(Once::Data));
    }

    #[test]
    fn history_stops_at_64_letters() {
        let mut h = History::new();
        for _ in 0..100 {
            h.push(b'D');
        }
        assert_eq!(h.as_str().len(), 64);
    }
}
