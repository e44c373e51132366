//! A validating JSON pull reader over a `&str`, for the admission hot path.
//!
//! The API server sends a whole Pod, and the webhook reads a few fields of it. serde_json
//! validates and skips the rest one token at a time; this reader does the same work with fewer
//! instructions per byte (one table lookup per string byte, no per-token dispatch through the
//! serde data model). It accepts only valid JSON (RFC 8259): strings without control
//! characters and with valid escapes, numbers by the grammar, the three literals, nothing after
//! the document but whitespace.
//!
//! It is deliberately partial: anything it does not handle (a key with escapes, a surrogate
//! escape in a string it decodes, nesting deeper than [`MAX_DEPTH`], a type its caller does not
//! expect) is [`Unhandled`], and the caller falls back to serde_json, which then gives the
//! answer and the error message. So this reader never has to explain an error, only to never
//! accept what serde_json would refuse.

use std::borrow::Cow;

/// The reader stopped: the input is invalid, or valid in a way it leaves to serde_json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unhandled;

/// What a reader call returns.
pub type Read<T> = Result<T, Unhandled>;

/// Deepest nesting the reader follows; deeper documents are left to serde_json.
pub const MAX_DEPTH: u32 = 64;

/// Bytes that end the plain run of a string: `"`, `\` and the control characters.
const STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

const ONES: u64 = u64::from_le_bytes([1; 8]);
const HIGH: u64 = ONES << 7;

/// Flags (high bit) the bytes of `v` that are `"`, `\\` or below 0x20. A byte is flagged
/// wrongly only when a borrow comes from a lower byte that is flagged rightly, so the lowest
/// flag is always exact.
fn stop_bytes(v: u64) -> u64 {
    let control = v.wrapping_sub(ONES * 0x20) & !v;
    let q = v ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let s = v ^ (ONES * u64::from(b'\\'));
    let backslash = s.wrapping_sub(ONES) & !s;
    (control | quote | backslash) & HIGH
}

/// Index of the first byte of `b` that a JSON string cannot hold as it is (`"`, `\\` or a
/// control character), or `b.len()`. Eight bytes at a time.
fn plain_len(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let stops = stop_bytes(u64::from_le_bytes(chunk));
        if stops != 0 {
            // The lowest flagged byte is exact (see `stop_bytes`).
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|&c| !STOP[usize::from(c)]) {
        i += 1;
    }
    i
}

/// Whether `s` can be written as a JSON string as it is, between quotes. One branch-free pass
/// over every byte, which the compiler vectorises: faster than [`plain_len`] on the long
/// strings written whole (the base64 patch), and no slower on short ones.
#[allow(
    clippy::needless_bitwise_bool,
    reason = "branch-free on purpose, so that the pass is vectorised"
)]
pub fn is_plain(s: &str) -> bool {
    s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    })
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it: `\"`, `\\\\`, the
/// short escapes for backspace, form feed, line feed, carriage return and tab, `\u00xx` for
/// the other control characters, and everything else as it is.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    if is_plain(s) {
        out.extend_from_slice(b);
        out.push(b'"');
        return;
    }
    let mut i = 0;
    loop {
        let run = plain_len(&b[i..]);
        out.extend_from_slice(&b[i..i + run]);
        i += run;
        let Some(&c) = b.get(i) else {
            break;
        };
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 0xf)]);
            }
        }
        i += 1;
    }
    out.push(b'"');
}

/// Appends a JSON object of strings, `{"key":"value",…}`, in the order given.
pub fn write_object<'s>(out: &mut Vec<u8>, members: impl IntoIterator<Item = (&'s str, &'s str)>) {
    out.push(b'{');
    for (n, (key, value)) in members.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_string(out, value);
    }
    out.push(b'}');
}

/// A cursor over one JSON document.
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`.
    pub fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn skip_ws(&mut self) {
        let b = self.bytes();
        // The API server sends compact JSON: the first byte is rarely whitespace.
        while let Some(&c) = b.get(self.pos) {
            if c > b' ' || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, without taking it.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes().get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Read<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unhandled)
        }
    }

    /// Succeeds when nothing but whitespace is left.
    pub fn end(&mut self) -> Read<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Unhandled),
        }
    }

    /// Takes `null` if it is next.
    pub fn null(&mut self) -> Read<bool> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Reads a boolean.
    pub fn bool(&mut self) -> Read<bool> {
        match self.peek() {
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| false),
            _ => Err(Unhandled),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Read<()> {
        if self.bytes()[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Unhandled)
        }
    }

    /// Moves past the plain run of a string, to its closing quote, a backslash or a control
    /// character.
    #[inline]
    fn run(&mut self) {
        self.pos += self.bytes().get(self.pos..).map_or(0, plain_len);
    }

    /// Reads a string without escapes (object keys); one with escapes is left to serde_json.
    pub fn key(&mut self) -> Read<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        self.run();
        if self.bytes().get(self.pos) != Some(&b'"') {
            return Err(Unhandled);
        }
        let key = self.text.get(start..self.pos).ok_or(Unhandled)?;
        self.pos += 1;
        Ok(key)
    }

    /// Reads a string, borrowed unless it holds escapes.
    pub fn string(&mut self) -> Read<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.pos;
        self.run();
        match self.bytes().get(self.pos) {
            Some(b'"') => {
                let s = self.text.get(start..self.pos).ok_or(Unhandled)?;
                self.pos += 1;
                Ok(Cow::Borrowed(s))
            }
            Some(b'\\') => {
                let mut out = String::with_capacity(self.pos - start + 16);
                out.push_str(self.text.get(start..self.pos).ok_or(Unhandled)?);
                self.unescape_into(&mut out)?;
                Ok(Cow::Owned(out))
            }
            _ => Err(Unhandled),
        }
    }

    /// Decodes the rest of a string from a backslash to its closing quote.
    fn unescape_into(&mut self, out: &mut String) -> Read<()> {
        let b = self.bytes();
        loop {
            match b.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let c = match b.get(self.pos + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let code = hex4(b, self.pos + 2)?;
                            // Surrogate pairs, lone surrogates included, are left to serde_json.
                            let c = char::from_u32(code).ok_or(Unhandled)?;
                            self.pos += 4;
                            c
                        }
                        _ => return Err(Unhandled),
                    };
                    out.push(c);
                    self.pos += 2;
                }
                Some(_) => {
                    let start = self.pos;
                    self.run();
                    if start == self.pos {
                        // A control character.
                        return Err(Unhandled);
                    }
                    out.push_str(self.text.get(start..self.pos).ok_or(Unhandled)?);
                }
                None => return Err(Unhandled),
            }
        }
    }

    /// Moves past a string, checking its escapes without decoding them.
    fn skip_string(&mut self) -> Read<()> {
        self.pos += 1;
        let b = self.bytes();
        loop {
            self.run();
            match b.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => match b.get(self.pos + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                    Some(b'u') => {
                        // Any four hex digits: serde_json checks surrogates only where it decodes.
                        hex4(b, self.pos + 2)?;
                        self.pos += 6;
                    }
                    _ => return Err(Unhandled),
                },
                _ => return Err(Unhandled),
            }
        }
    }

    /// Moves past a number, by the JSON grammar.
    fn skip_number(&mut self) -> Read<()> {
        let b = self.bytes();
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ => return Err(Unhandled),
        }
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            if end == i + 1 {
                return Err(Unhandled);
            }
            i = end;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let end = digits(i);
            if end == i {
                return Err(Unhandled);
            }
            i = end;
        }
        // What follows (a digit, as in `01`, or anything else) is for the caller to refuse.
        self.pos = i;
        Ok(())
    }

    /// Moves past one value of any kind, checking that it is valid JSON.
    pub fn skip(&mut self) -> Read<()> {
        // One bit per open container: set for an object, clear for an array.
        let mut stack: u64 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value is expected here.
            match self.peek() {
                Some(b'"') => self.skip_string()?,
                Some(b'{') => {
                    self.pos += 1;
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        if depth == MAX_DEPTH {
                            return Err(Unhandled);
                        }
                        stack = (stack << 1) | 1;
                        depth += 1;
                        self.member_key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        if depth == MAX_DEPTH {
                            return Err(Unhandled);
                        }
                        stack <<= 1;
                        depth += 1;
                        continue;
                    }
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                _ => return Err(Unhandled),
            }
            // A value has ended: close what it ends, or go on to the next member.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let in_object = stack & 1 == 1;
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if in_object {
                            self.member_key()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {}
                    Some(b']') if !in_object => {}
                    _ => return Err(Unhandled),
                }
                self.pos += 1;
                stack >>= 1;
                depth -= 1;
            }
        }
    }

    /// Moves past a member's key and its colon.
    fn member_key(&mut self) -> Read<()> {
        if self.peek() != Some(b'"') {
            return Err(Unhandled);
        }
        self.skip_string()?;
        self.eat(b':')
    }

    /// Reads an object, calling `member` with each key; `member` must read or skip the value.
    pub fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Read<()>) -> Read<()> {
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Unhandled),
            }
        }
    }

    /// Reads an array, calling `element` for each element; `element` must read or skip it.
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.eat(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Unhandled),
            }
        }
    }
}

/// Four hex digits at `at`, as a code unit.
fn hex4(b: &[u8], at: usize) -> Read<u32> {
    let digits = b.get(at..at + 4).ok_or(Unhandled)?;
    let mut code = 0;
    for &d in digits {
        let v = char::from(d).to_digit(16).ok_or(Unhandled)?;
        code = code * 16 + v;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(text: &str) -> bool {
        let mut r = Reader::new(text);
        r.skip().and_then(|()| r.end()).is_ok()
    }

    fn serde_valid(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn skips_what_serde_json_accepts() {
        for text in [
            "{}",
            "[]",
            " { \"a\" : [1, -2.5e+3, 0, 0.0, 1E9, true, false, null, \"x\"] , \"b\":{}} ",
            "\"plain\"",
            "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud800\"",
            "[[[[]]],[{}],{\"\":[{\"\":null}]}]",
            "-0",
            "\"é ü 日本\"",
        ] {
            assert!(valid(text), "{text}");
            assert!(serde_valid(text), "{text}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for text in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "{1:2}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "1e+",
            "tru",
            "nul",
            "\"unterminated",
            "\"bad \\x escape\"",
            "\"bad \\u12 escape\"",
            "\"tab\tinside\"",
            "[}",
            "{]",
            "{} {}",
            "NaN",
            "\u{a0}{}",
        ] {
            assert!(!valid(text), "{text:?}");
            assert!(!serde_valid(text), "{text:?}");
        }
    }

    fn first_stop(bytes: [u8; 8]) -> u32 {
        stop_bytes(u64::from_le_bytes(bytes)).trailing_zeros() / 8
    }

    #[test]
    fn the_lowest_flag_is_the_first_stop_byte() {
        // Every byte value at every position over fillers that a borrow could flag wrongly,
        // then pseudo-random words.
        for fill in [
            b'a', 0x00, 0x1f, 0x20, 0x21, b'"', b'#', b'\\', b']', 0x7f, 0x80, 0xff,
        ] {
            for at in 0..8 {
                for c in 0..=255u8 {
                    let mut bytes = [fill; 8];
                    bytes[at] = c;
                    let expected = bytes
                        .iter()
                        .position(|&b| STOP[usize::from(b)])
                        .unwrap_or(8);
                    assert_eq!(first_stop(bytes) as usize, expected, "{bytes:?}");
                }
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            let expected = bytes
                .iter()
                .position(|&b| STOP[usize::from(b)])
                .unwrap_or(8);
            assert_eq!(first_stop(bytes) as usize, expected, "{bytes:?}");
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut specials: Vec<char> = (0..0x20u8).map(char::from).collect();
        specials.extend(['"', '\\', '/', '\u{7f}', 'é', '日', 'x', ' ']);
        for len in 0..20 {
            for at in 0..len {
                for &c in &specials {
                    let text: String = (0..len)
                        .map(|i| if i == at || i == len / 2 { c } else { 'x' })
                        .collect();
                    let want = serde_json::to_string(&text).unwrap_or_default();
                    let mut out = Vec::new();
                    write_string(&mut out, &text);
                    assert_eq!(String::from_utf8_lossy(&out), want, "{text:?}");
                    assert_eq!(is_plain(&text), want == format!("\"{text}\""), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn a_run_ends_at_the_first_stop_at_any_offset() {
        for stop in ['"', '\\', '\u{0}', '\u{1f}'] {
            for len in 0..24 {
                for at in 0..=len {
                    let text: String = (0..len)
                        .map(|i| {
                            if i == at {
                                stop
                            } else {
                                ['a', ' ', '!', '#', ']', 'é'][i % 6]
                            }
                        })
                        .collect();
                    let expected = text
                        .find(['"', '\\', '\u{0}', '\u{1f}'])
                        .unwrap_or(text.len());
                    let mut r = Reader::new(&text);
                    r.run();
                    assert_eq!(r.pos, expected, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_left_to_serde_json() {
        let depth = usize::try_from(MAX_DEPTH).unwrap_or(64);
        let ok = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(valid(&ok));
        let deep = format!("{}1{}", "[".repeat(depth + 1), "]".repeat(depth + 1));
        assert!(!valid(&deep));
    }

    #[test]
    fn strings_borrow_without_escapes_and_decode_with_them() {
        let mut r = Reader::new(r#""nginx:1.27""#);
        assert!(matches!(r.string(), Ok(Cow::Borrowed("nginx:1.27"))));
        let mut r = Reader::new(r#""a\"b\\c\/d\n\u00e9\u65e5""#);
        assert_eq!(r.string().as_deref(), Ok("a\"b\\c/d\né日"));
        for text in [r#""\ud83d\ude00""#, r#""\ud800""#, "\"a\u{1}\"", r#""\q""#] {
            assert_eq!(Reader::new(text).string(), Err(Unhandled), "{text}");
        }
    }

    #[test]
    fn objects_and_arrays_call_back_per_member() {
        let mut r = Reader::new(r#" {"a": [1, 2], "b": "x", "c": {"d": null}} "#);
        let mut keys = Vec::new();
        let mut count = 0;
        let read = r
            .object(|r, key| {
                keys.push(key);
                if key == "a" {
                    r.array(|r| {
                        count += 1;
                        r.skip()
                    })
                } else {
                    r.skip()
                }
            })
            .and_then(|()| r.end());
        assert_eq!(read, Ok(()));
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(count, 2);
        assert_eq!(
            Reader::new(r#"{"k\u0041": 1}"#).object(|r, _| r.skip()),
            Err(Unhandled)
        );
    }
}
