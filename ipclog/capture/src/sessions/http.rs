//! `--dpi http` (miruo `-m http`): the request line (with Host) and the response status
//! (with Content-Length) of each HTTP/1.x exchange, from each side's byte stream put back in
//! order. A request split across segments waits for the rest of its header; pipelined
//! requests follow each other in the stream (bodies are skipped by Content-Length). A side
//! that does not speak HTTP/1.x, sends a header longer than [`MAX_HEADER`], a chunked body, or
//! loses bytes (a gap) is no longer followed. Text from packets is escaped before it is shown.

/// Longest request or response header followed.
const MAX_HEADER: usize = 8192;

/// What an exchange showed.
pub(crate) enum HttpNote {
    Request(String),
    Response(String),
}

#[derive(Default)]
struct Side {
    next: Option<u32>,
    buf: Vec<u8>,
    /// Body bytes still to skip.
    skip: u64,
    /// No longer followed (not HTTP, a gap, a chunked body...).
    dead: bool,
}

/// The HTTP state of one TCP session: side 0 the client (originator), 1 the server.
#[derive(Default)]
pub(crate) struct Http {
    side: [Side; 2],
    /// Request methods waiting for their responses (HEAD's response has no body).
    pending_head: std::collections::VecDeque<bool>,
    pub(crate) method: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) uri: Option<String>,
    pub(crate) status: Option<u16>,
    /// Sides given up for not speaking HTTP/1.x.
    pub(crate) garbage: u32,
}

fn find(h: &[u8], pat: &[u8]) -> Option<usize> {
    h.windows(pat.len()).position(|w| w == pat)
}

fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|l| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        let colon = l.iter().position(|&b| b == b':')?;
        l[..colon]
            .eq_ignore_ascii_case(name.as_bytes())
            .then(|| l[colon + 1..].trim_ascii())
    })
}

fn raw(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Foreign text for the view: escaped.
fn text(b: &[u8]) -> String {
    shared::text::escaped_bytes(b)
}

impl Http {
    /// Segment with sequence number `seq`, `len` payload bytes on the wire of which
    /// `payload` were captured, flags `fl`, sent by side `d`: the exchanges it completes.
    pub(crate) fn segment(
        &mut self,
        d: usize,
        seq: u32,
        len: u32,
        fl: u8,
        payload: &[u8],
    ) -> Vec<HttpNote> {
        let s = &mut self.side[d];
        if fl & crate::wire::SYN != 0 {
            s.next = Some(seq.wrapping_add(1));
            return Vec::new();
        }
        if s.dead || len == 0 {
            return Vec::new();
        }
        let next = *s.next.get_or_insert(seq);
        let mut data = &payload[..payload.len().min(len as usize)];
        let off = next.wrapping_sub(seq) as i32;
        if off < 0 || payload.len() < len as usize {
            // Bytes missing (not captured, or a gap): the stream cannot be followed.
            s.dead = true;
            return Vec::new();
        }
        if off as usize >= data.len() {
            return Vec::new(); // all seen already (a retransmission)
        }
        data = &data[off as usize..];
        s.next = Some(next.wrapping_add(data.len() as u32));
        s.buf.extend_from_slice(data);
        let mut notes = Vec::new();
        loop {
            let s = &mut self.side[d];
            if s.skip > 0 {
                let n = (s.skip as usize).min(s.buf.len());
                s.buf.drain(..n);
                s.skip -= n as u64;
                if s.skip > 0 {
                    break;
                }
            }
            if s.buf.is_empty() {
                break;
            }
            let Some(end) = find(&s.buf, b"\r\n\r\n") else {
                if s.buf.len() > MAX_HEADER || !plausible(d, &s.buf) {
                    self.give_up(d);
                }
                break;
            };
            let head: Vec<u8> = s.buf.drain(..end + 4).collect();
            match self.exchange(d, &head) {
                Some(n) => notes.push(n),
                None => {
                    self.give_up(d);
                    break;
                }
            }
        }
        notes
    }

    fn give_up(&mut self, d: usize) {
        let s = &mut self.side[d];
        if !s.dead {
            s.dead = true;
            s.buf = Vec::new();
            self.garbage += 1;
        }
    }

    /// One request or response header `head` (ending with the empty line).
    fn exchange(&mut self, d: usize, head: &[u8]) -> Option<HttpNote> {
        let first = head.split(|&b| b == b'\r').next()?;
        let mut parts = first.splitn(3, |&b| b == b' ');
        let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
        let chunked =
            header(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked"));
        let length: Option<u64> = header(head, "content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok());
        if d == 0 {
            if !c.starts_with(b"HTTP/1.") || a.is_empty() || !a.iter().all(u8::is_ascii_uppercase) {
                return None;
            }
            self.pending_head.push_back(a == b"HEAD");
            let host = header(head, "host");
            // The connection's fields keep the text as it came (each output escapes it).
            if self.method.is_none() {
                self.method = Some(raw(a));
                self.uri = Some(raw(b));
                self.host = host.map(raw);
            }
            if chunked {
                self.side[0].dead = true;
            }
            self.side[0].skip = length.unwrap_or(0);
            let mut n = format!("{} {} {}", text(a), text(b), text(c));
            if let Some(h) = host {
                n.push_str(&format!(" Host: {}", text(h)));
            }
            Some(HttpNote::Request(n))
        } else {
            if !a.starts_with(b"HTTP/1.") || b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let code: u16 = std::str::from_utf8(b).ok()?.parse().ok()?;
            let head_req = self.pending_head.pop_front().unwrap_or(false);
            if self.status.is_none() {
                self.status = Some(code);
            }
            let bodiless = head_req || code < 200 || code == 204 || code == 304;
            if !bodiless {
                match (chunked, length) {
                    (false, Some(n)) => self.side[1].skip = n,
                    // The body runs to a chunk end or the close: not followed further.
                    _ => self.side[1].dead = true,
                }
            }
            let mut n = format!("{} {} {}", text(a), text(b), text(c));
            if let Some(l) = length {
                n.push_str(&format!(" Content-Length: {l}"));
            }
            Some(HttpNote::Response(n))
        }
    }
}

/// Whether the start of a side's stream can still become an HTTP/1.x header.
fn plausible(d: usize, b: &[u8]) -> bool {
    if d == 1 {
        let p = b"HTTP/1.";
        let n = b.len().min(p.len());
        return b[..n] == p[..n];
    }
    match b.iter().position(|&c| c == b' ') {
        Some(i) => i > 0 && b[..i].iter().all(u8::is_ascii_uppercase),
        None => b.len() <= 16 && b.iter().all(u8::is_ascii_uppercase),
    }
}

#[cfg(test)]
mod tests {
    use super::{Http, HttpNote};

    fn texts(n: Vec<HttpNote>) -> Vec<String> {
        n.into_iter()
            .map(|n| match n {
                HttpNote::Request(t) | HttpNote::Response(t) => t,
            })
            .collect()
    }

    #[test]
    fn a_gap_or_garbage_stops_following_the_side() {
        let mut h = Http::default();
        assert!(h.segment(0, 100, 0, crate::wire::SYN, b"").is_empty());
        // Bytes 101.. missing: a gap, the side is given up.
        assert!(texts(h.segment(0, 111, 16, 0x18, b"GET / HTTP/1.1\r\n")).is_empty());
        assert!(h.side[0].dead);
        let mut h = Http::default();
        assert!(texts(h.segment(0, 1, 6, 0x18, &[0, 1, 2, 0xff, 0x16, 3])).is_empty());
        assert_eq!(h.garbage, 1);
        // A header that never ends is given up at 8 KB.
        let mut h = Http::default();
        let long = [b'A'; 9000];
        let mut req = b"GET /".to_vec();
        req.extend_from_slice(&long);
        assert!(texts(h.segment(0, 1, req.len() as u32, 0x18, &req)).is_empty());
        assert_eq!(h.garbage, 1);
        // A retransmitted request is not seen twice.
        let mut h = Http::default();
        let r = b"GET /a HTTP/1.0\r\n\r\n";
        assert_eq!(texts(h.segment(0, 1, r.len() as u32, 0x18, r)).len(), 1);
        assert!(texts(h.segment(0, 1, r.len() as u32, 0x18, r)).is_empty());
    }
}
