//! The JSON string writer of the admission path: strings escaped exactly as serde_json escapes
//! them, in one vectorised pass when nothing needs escaping, and objects of strings.
//!
//! The answer to every AdmissionReview is written by hand (the response, the patch, the record
//! of original images), and most of its strings are plain: checking that eight bytes at a time
//! and copying them whole costs far less than serde_json's serializer.

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

#[cfg(test)]
mod tests {
    use super::*;

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
                    assert_eq!(plain_len(text.as_bytes()), expected, "{text:?}");
                }
            }
        }
    }
}
