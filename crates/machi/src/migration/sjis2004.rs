//! Shift_JIS-2004 (JIS X 0213:2004) input, decoded to UTF-8 as it streams.
//!
//! The double-byte table (`sjis2004.bin`, written by
//! `tools/gen_sjis2004.py`) holds 11,233 codes, some of them mapping to two
//! Unicode characters (a kana with a semi-voiced mark, for instance).
//! Single bytes: 0x00–0x7F are read as ASCII (as municipal systems write
//! CSV: 0x5C is the backslash, not ¥), 0xA1–0xDF as half-width katakana.
//! A byte sequence that is not Shift_JIS-2004 is an error naming its offset,
//! never a silent replacement.

use std::io::{self, Read};
use std::sync::OnceLock;

static TABLE: &[u8] = include_bytes!("sjis2004.bin");

const TRAILS: usize = 188;

pub(crate) fn is_lead(b: u8) -> bool {
    (0x81..=0x9F).contains(&b) || (0xE0..=0xFC).contains(&b)
}

fn lead_index(b: u8) -> usize {
    if b <= 0x9F {
        (b - 0x81) as usize
    } else {
        (b - 0xE0) as usize + 31
    }
}

fn trail_index(b: u8) -> Option<usize> {
    match b {
        0x40..=0x7E => Some((b - 0x40) as usize),
        0x80..=0xFC => Some((b - 0x80) as usize + 63),
        _ => None,
    }
}

/// (first, second) scalar values by lead × trail; (0, 0) where unmapped.
fn lookup() -> &'static [(u32, u32)] {
    static MAP: OnceLock<Vec<(u32, u32)>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map = vec![(0u32, 0u32); 60 * TRAILS];
        for e in TABLE.chunks_exact(8) {
            let cp = |b: &[u8]| (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            if let Some(t) = trail_index(e[1]) {
                map[lead_index(e[0]) * TRAILS + t] = (cp(&e[2..5]), cp(&e[5..8]));
            }
        }
        map
    })
}

/// Decodes one double-byte code; None if it is not Shift_JIS-2004.
pub fn decode_pair(lead: u8, trail: u8) -> Option<(char, Option<char>)> {
    if !is_lead(lead) {
        return None;
    }
    let (a, b) = *lookup().get(lead_index(lead) * TRAILS + trail_index(trail)?)?;
    let first = char::from_u32(a).filter(|_| a != 0)?;
    Some((first, if b == 0 { None } else { char::from_u32(b) }))
}

/// A reader of Shift_JIS-2004 bytes that yields UTF-8.
pub struct Sjis2004Reader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes of input decoded so far (for error messages).
    offset: u64,
    eof: bool,
}

impl<R: Read> Sjis2004Reader<R> {
    pub fn new(inner: R) -> Self {
        Sjis2004Reader {
            inner,
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
            out: Vec::with_capacity(1 << 17),
            out_pos: 0,
            offset: 0,
            eof: false,
        }
    }

    fn invalid(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not Shift_JIS-2004 at byte {} ({what}) / Shift_JIS-2004 ではありません（{} バイト目）",
                self.offset, self.offset
            ),
        )
    }

    /// Decodes what is buffered into `out`; keeps a lone lead byte for later.
    fn decode(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out_pos = 0;
        let mut tmp = [0u8; 4];
        while self.start < self.end {
            let b = self.buf[self.start];
            if b < 0x80 {
                self.out.push(b);
                self.start += 1;
                self.offset += 1;
            } else if (0xA1..=0xDF).contains(&b) {
                let c = char::from_u32(0xFF61 + u32::from(b - 0xA1)).unwrap_or('\u{FFFD}');
                self.out
                    .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                self.start += 1;
                self.offset += 1;
            } else if is_lead(b) {
                if self.start + 1 >= self.end {
                    if self.eof {
                        return Err(self.invalid("a lead byte at the end of the file"));
                    }
                    break;
                }
                let t = self.buf[self.start + 1];
                let (c1, c2) =
                    decode_pair(b, t).ok_or_else(|| self.invalid(&format!("{b:02X} {t:02X}")))?;
                self.out
                    .extend_from_slice(c1.encode_utf8(&mut tmp).as_bytes());
                if let Some(c2) = c2 {
                    self.out
                        .extend_from_slice(c2.encode_utf8(&mut tmp).as_bytes());
                }
                self.start += 2;
                self.offset += 2;
            } else {
                return Err(self.invalid(&format!("{b:02X}")));
            }
        }
        Ok(())
    }

    fn fill(&mut self) -> io::Result<()> {
        // Move a kept lead byte to the front, then read more.
        let kept = self.end - self.start;
        self.buf.copy_within(self.start..self.end, 0);
        self.start = 0;
        self.end = kept;
        let n = self.inner.read(&mut self.buf[kept..])?;
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }
}

impl<R: Read> Read for Sjis2004Reader<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        while self.out_pos >= self.out.len() {
            if self.eof && self.start >= self.end {
                return Ok(0);
            }
            self.fill()?;
            self.decode()?;
            if self.eof && self.out.is_empty() && self.start >= self.end {
                return Ok(0);
            }
        }
        let n = dst.len().min(self.out.len() - self.out_pos);
        dst[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes with the same table (for tests only).
    fn encode(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if (c as u32) < 0x80 {
                out.push(c as u8);
                i += 1;
                continue;
            }
            let mut found = None;
            for e in TABLE.chunks_exact(8) {
                let (a, b) = decode_pair(e[0], e[1]).unwrap();
                let two = b.is_some_and(|b| chars.get(i + 1) == Some(&b));
                if a == c && (b.is_none() || two) {
                    found = Some((e[0], e[1], if two { 2 } else { 1 }));
                    if two {
                        break;
                    }
                }
            }
            let (l, t, n) = found.unwrap_or_else(|| panic!("{c} not in the table"));
            out.extend([l, t]);
            i += n;
        }
        out
    }

    #[test]
    fn decodes_jis_x_0213_including_plane_2_and_two_character_codes() {
        // A plane-2 character and a two-character code, taken from the table.
        let plane2 = TABLE
            .chunks_exact(8)
            .map(|e| decode_pair(e[0], e[1]).unwrap())
            .find(|(a, _)| (*a as u32) > 0xFFFF)
            .unwrap()
            .0;
        let pair = TABLE
            .chunks_exact(8)
            .map(|e| decode_pair(e[0], e[1]).unwrap())
            .find(|(_, b)| b.is_some())
            .unwrap();
        let text = format!(
            "宛名,氏名\n1,高橋　﨑子{plane2}{}{}\n",
            pair.0,
            pair.1.unwrap()
        );
        let bytes = encode(&text);
        // Read one byte at a time to cross every boundary.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
                match self.0.split_first() {
                    Some((b, rest)) if !dst.is_empty() => {
                        dst[0] = *b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let mut s = String::new();
        Sjis2004Reader::new(OneByte(&bytes))
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, text);
        let mut s = String::new();
        Sjis2004Reader::new(&bytes[..])
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, text);
    }

    #[test]
    fn half_width_katakana_and_errors() {
        let mut s = String::new();
        Sjis2004Reader::new(&[0xB1u8, 0xDE, b'A'][..])
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "ｱﾞA");
        for bad in [&[0x88u8][..], &[0x88, 0x20], &[0xFD], &[0x80]] {
            let mut s = String::new();
            let e = Sjis2004Reader::new(bad).read_to_string(&mut s).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{bad:?}");
        }
    }
}
