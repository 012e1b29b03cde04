//! Which character encoding an input file is in, decided from every byte of
//! it, and a strict reader for Shift_JIS as Windows writes it (CP932).
//!
//! `--encoding auto` never guesses where the guess would change the data:
//!
//! - valid UTF-8 is UTF-8;
//! - text that is UTF-8 for a while and then is not (at least
//!   [`UTF8_EVIDENCE`] multi-byte characters before the first bad byte) is
//!   broken UTF-8, reported at its line, not re-read as Shift_JIS;
//! - otherwise a file that decodes as CP932 or as Shift_JIS-2004 (JIS X
//!   0213) is read as the one it decodes as; if it decodes as both and holds
//!   a code the two read differently (CP932's NEC and IBM extensions sit
//!   where JIS X 0213 has other kanji: 0xFBFC is 髙 in one, another kanji
//!   in the other), it is refused as ambiguous, naming the line, so that the
//!   operator says which with `--encoding`;
//! - a file none of the three decode is refused at the line where the one
//!   that read furthest failed.
//!
//! An encoding named with `--encoding` is taken at its word, but its
//! decoding is strict as well: a byte sequence that is not in it is an
//! error naming its place, never a replacement character.

use std::io::{self, Read};
use std::sync::OnceLock;

use encoding_rs::{DecoderResult, SHIFT_JIS};

use super::import::InputEncoding;
use super::sjis2004;

/// Multi-byte UTF-8 characters before the first invalid byte that make a
/// file broken UTF-8 rather than Shift_JIS (Shift_JIS text does not form
/// that many valid UTF-8 sequences by chance).
pub const UTF8_EVIDENCE: u64 = 16;

/// What [`Detector`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    /// The file decodes as this encoding, and only one reading is possible.
    Decided(InputEncoding),
    /// Valid CP932 and valid Shift_JIS-2004, read differently from the
    /// code `offset` bytes into the file ([`line_of`] tells its line).
    Ambiguous { offset: u64 },
    /// Broken: not valid in `encoding` (the likeliest one) from `offset`
    /// bytes into the file.
    Invalid {
        encoding: InputEncoding,
        offset: u64,
    },
}

/// The line (1-based) of byte `offset` of a stream.
pub fn line_of(mut r: impl Read, offset: u64) -> io::Result<u64> {
    let mut line = 1;
    let mut left = offset;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = r.read(&mut buf[..left.min(1 << 16) as usize])?;
        if n == 0 {
            break;
        }
        line += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        left -= n as u64;
    }
    Ok(line)
}

/// Reads a file's bytes in order ([`Detector::feed`]) and tells which
/// encoding they are in ([`Detector::finish`]).
pub struct Detector {
    /// Bytes fed so far.
    offset: u64,
    /// Where each candidate encoding failed (its first bad byte), if it did.
    utf8: Option<u64>,
    /// A UTF-8 sequence cut by the end of the last chunk.
    utf8_carry: Vec<u8>,
    utf8_multibyte: u64,
    cp932: Option<u64>,
    cp932_decoder: encoding_rs::Decoder,
    scratch: Vec<u8>,
    sjis2004: Option<u64>,
    /// A Shift_JIS lead byte at the end of the last chunk.
    lead: Option<u8>,
    /// The first code valid in both Shift_JIS readings that decodes
    /// differently.
    ambiguous_at: Option<u64>,
}

impl Default for Detector {
    fn default() -> Self {
        Detector {
            offset: 0,
            utf8: None,
            utf8_carry: Vec::new(),
            utf8_multibyte: 0,
            cp932: None,
            cp932_decoder: SHIFT_JIS.new_decoder_without_bom_handling(),
            scratch: vec![0; 1 << 17],
            sjis2004: None,
            lead: None,
            ambiguous_at: None,
        }
    }
}

impl Detector {
    pub fn feed(&mut self, chunk: &[u8]) {
        // A UTF-8 byte-order mark is evidence enough (a Shift_JIS file does
        // not start with one).
        if self.offset == 0 && chunk.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.utf8_multibyte = UTF8_EVIDENCE;
        }
        if self.utf8.is_none() {
            self.feed_utf8(chunk);
        }
        if self.cp932.is_none() {
            self.feed_cp932(chunk, false);
        }
        if self.sjis2004.is_none() {
            self.feed_sjis2004(chunk);
        }
        self.offset += chunk.len() as u64;
    }

    /// The file offset of byte `pos` of the chunk being fed.
    fn at(&self, pos: usize) -> Option<u64> {
        Some(self.offset + pos as u64)
    }

    fn feed_utf8(&mut self, chunk: &[u8]) {
        let carried = self.utf8_carry.len();
        let joined;
        let bytes: &[u8] = if carried > 0 {
            let mut v = std::mem::take(&mut self.utf8_carry);
            v.extend_from_slice(chunk);
            joined = v;
            &joined
        } else {
            chunk
        };
        let (valid, failure) = match std::str::from_utf8(bytes) {
            Ok(s) => (s, None),
            Err(e) => {
                let ok = &bytes[..e.valid_up_to()];
                // Safe to take: from_utf8 vouched for the prefix.
                let s = std::str::from_utf8(ok).unwrap_or_default();
                match e.error_len() {
                    Some(_) => (s, Some(e.valid_up_to())),
                    None => {
                        self.utf8_carry = bytes[e.valid_up_to()..].to_vec();
                        (s, None)
                    }
                }
            }
        };
        // Counted only until there is enough evidence.
        if self.utf8_multibyte < UTF8_EVIDENCE {
            self.utf8_multibyte += valid.bytes().filter(|b| *b >= 0xC0).count() as u64;
        }
        if let Some(at) = failure {
            // Positions in `bytes` are `carried` bytes before the chunk's.
            self.utf8 = Some((self.offset + at as u64).saturating_sub(carried as u64));
        }
    }

    fn feed_cp932(&mut self, chunk: &[u8], last: bool) {
        let mut read_total = 0;
        loop {
            let (result, read, _) = self.cp932_decoder.decode_to_utf8_without_replacement(
                &chunk[read_total..],
                &mut self.scratch,
                last,
            );
            read_total += read;
            match result {
                DecoderResult::InputEmpty => return,
                DecoderResult::OutputFull => continue,
                DecoderResult::Malformed(bad, after) => {
                    let at = (read_total as u64).saturating_sub(u64::from(bad) + u64::from(after));
                    self.cp932 = self.at(at as usize);
                    return;
                }
            }
        }
    }

    fn feed_sjis2004(&mut self, chunk: &[u8]) {
        let mut i = 0;
        // A lead byte left from the last chunk pairs with this one's first.
        if let Some(lead) = self.lead.take() {
            match chunk.first() {
                Some(&t) => {
                    if !self.pair(lead, t, 0) {
                        return;
                    }
                    i = 1;
                }
                None => {
                    self.lead = Some(lead);
                    return;
                }
            }
        }
        while i < chunk.len() {
            let b = chunk[i];
            if b < 0x80 || (0xA1..=0xDF).contains(&b) {
                i += 1;
            } else if sjis2004::is_lead(b) {
                let Some(&t) = chunk.get(i + 1) else {
                    self.lead = Some(b);
                    return;
                };
                if !self.pair(b, t, i) {
                    return;
                }
                i += 2;
            } else {
                self.sjis2004 = self.at(i);
                return;
            }
        }
    }

    /// Checks one double-byte code at `pos` of the chunk (the lead may be
    /// the last chunk's); false once Shift_JIS-2004 has failed.
    fn pair(&mut self, lead: u8, trail: u8, pos: usize) -> bool {
        if sjis2004::decode_pair(lead, trail).is_none() {
            self.sjis2004 = self.at(pos);
            return false;
        }
        if self.ambiguous_at.is_none() && self.cp932.is_none() && reads_differently(lead, trail) {
            self.ambiguous_at = Some(self.offset + pos as u64);
        }
        true
    }

    pub fn finish(mut self) -> Detection {
        if self.utf8.is_none() && !self.utf8_carry.is_empty() {
            self.utf8 = Some(self.offset - self.utf8_carry.len() as u64);
        }
        if self.cp932.is_none() {
            self.feed_cp932(&[], true);
        }
        if self.sjis2004.is_none() && self.lead.is_some() {
            self.sjis2004 = Some(self.offset - 1);
        }
        let Some(utf8_bad) = self.utf8 else {
            return Detection::Decided(InputEncoding::Utf8);
        };
        let invalid = |encoding, offset| Detection::Invalid { encoding, offset };
        if self.utf8_multibyte >= UTF8_EVIDENCE {
            return invalid(InputEncoding::Utf8, utf8_bad);
        }
        match (self.cp932, self.sjis2004) {
            (None, None) => match self.ambiguous_at {
                Some(offset) => Detection::Ambiguous { offset },
                None => Detection::Decided(InputEncoding::ShiftJis),
            },
            (None, Some(_)) => Detection::Decided(InputEncoding::ShiftJis),
            (Some(_), None) => Detection::Decided(InputEncoding::ShiftJis2004),
            (Some(cp932_bad), Some(sjis2004_bad)) => {
                // The one that read furthest is the likeliest.
                let mut best = (InputEncoding::Utf8, utf8_bad);
                for (e, bad) in [
                    (InputEncoding::ShiftJis, cp932_bad),
                    (InputEncoding::ShiftJis2004, sjis2004_bad),
                ] {
                    if bad > best.1 {
                        best = (e, bad);
                    }
                }
                invalid(best.0, best.1)
            }
        }
    }
}

/// JIS X 0208 symbols that the two tables map to different Unicode
/// characters (CP932's, JIS X 0213's) while meaning the same one: not an
/// ambiguity worth refusing a file for (CP932's reading is kept).
const SAME_SYMBOL: [(char, char); 7] = [
    ('＼', '\\'),
    ('～', '〜'),
    ('∥', '‖'),
    ('－', '−'),
    ('￠', '¢'),
    ('￡', '£'),
    ('￢', '¬'),
];

/// Whether a code valid in Shift_JIS-2004 is valid CP932 too, but another
/// character there (2,642 codes: NEC and IBM extension kanji, and the
/// user-defined area, which CP932 reads as private-use 外字).
fn reads_differently(lead: u8, trail: u8) -> bool {
    static TABLE: OnceLock<std::collections::HashSet<(u8, u8)>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let mut set = std::collections::HashSet::new();
            for lead in (0x81..=0x9Fu8).chain(0xE0..=0xFC) {
                for trail in (0x40..=0x7Eu8).chain(0x80..=0xFC) {
                    let Some((a, b)) = sjis2004::decode_pair(lead, trail) else {
                        continue;
                    };
                    let code = [lead, trail];
                    let (cp932, malformed) = SHIFT_JIS.decode_without_bom_handling(&code);
                    let mut jis = a.to_string();
                    jis.extend(b);
                    let same_symbol = SAME_SYMBOL
                        .iter()
                        .any(|(c, j)| cp932 == c.to_string() && jis == j.to_string());
                    if !malformed && cp932 != jis && !same_symbol {
                        set.insert((lead, trail));
                    }
                }
            }
            set
        })
        .contains(&(lead, trail))
}

/// A reader of CP932 bytes that yields UTF-8, failing (with the byte offset)
/// on a sequence that is not CP932 instead of replacing it.
pub struct Cp932Reader<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// The decoder has seen the end of the input.
    finished: bool,
    /// Decoded text not handed out yet.
    out: Vec<u8>,
    out_pos: usize,
    /// Input bytes decoded so far.
    offset: u64,
}

impl<R: Read> Cp932Reader<R> {
    pub fn new(inner: R) -> Self {
        Cp932Reader {
            inner,
            decoder: SHIFT_JIS.new_decoder_without_bom_handling(),
            buf: vec![0; 1 << 16],
            start: 0,
            end: 0,
            eof: false,
            finished: false,
            out: Vec::with_capacity(1 << 17),
            out_pos: 0,
            offset: 0,
        }
    }

    /// Decodes more input into `out`; false at the end of the text.
    fn refill(&mut self) -> io::Result<bool> {
        loop {
            if self.finished {
                return Ok(false);
            }
            if self.start == self.end && !self.eof {
                self.start = 0;
                self.end = self.inner.read(&mut self.buf)?;
                self.eof = self.end == 0;
            }
            let capacity = self.out.capacity().max(1 << 17);
            self.out.resize(capacity, 0);
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.buf[self.start..self.end],
                &mut self.out,
                self.eof,
            );
            self.start += read;
            self.offset += read as u64;
            self.out.truncate(written);
            self.out_pos = 0;
            match result {
                DecoderResult::Malformed(bad, after) => {
                    let at = self.offset - u64::from(bad) - u64::from(after);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "not Shift_JIS (CP932) at byte {at} / Shift_JIS (CP932) ではありません（{at} バイト目）"
                        ),
                    ));
                }
                DecoderResult::InputEmpty if self.eof => self.finished = true,
                _ => {}
            }
            if written > 0 {
                return Ok(true);
            }
        }
    }
}

impl<R: Read> Read for Cp932Reader<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if dst.is_empty() {
            return Ok(0);
        }
        if self.out_pos >= self.out.len() && !self.refill()? {
            return Ok(0);
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

    fn cp932(s: &str) -> Vec<u8> {
        let (b, _, unmappable) = SHIFT_JIS.encode(s);
        assert!(!unmappable, "{s} is not CP932");
        b.into_owned()
    }

    /// The detection of a whole stream (the import feeds its digest
    /// pass's chunks instead).
    fn detect(mut r: impl Read) -> io::Result<Detection> {
        let mut d = Detector::default();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(d.finish());
            }
            d.feed(&buf[..n]);
        }
    }

    fn detect_bytes(b: &[u8]) -> Detection {
        detect(b).unwrap()
    }

    #[test]
    fn utf8_is_utf8() {
        assert_eq!(
            detect_bytes("宛名番号\n0000000001,佐藤　花子\n".as_bytes()),
            Detection::Decided(InputEncoding::Utf8)
        );
    }

    #[test]
    fn a_bad_byte_in_utf8_is_reported_at_its_line_not_reread_as_shift_jis() {
        let mut b = "a,b\n".as_bytes().to_vec();
        for i in 0..10 {
            b.extend(format!("{i},東京都府中市宮西町二丁目\n").as_bytes());
        }
        let at = b.len();
        b.extend(b"9,\xFF\n");
        assert_eq!(
            detect_bytes(&b),
            Detection::Invalid {
                encoding: InputEncoding::Utf8,
                offset: at as u64 + 2
            }
        );
        assert_eq!(line_of(&b[..], at as u64 + 2).unwrap(), 12);
    }

    #[test]
    fn a_bom_makes_a_file_utf8_even_if_it_breaks_at_once() {
        let mut b = b"\xEF\xBB\xBFa,b\n1,".to_vec();
        b.extend(&"佐藤".as_bytes()[..4]);
        b.extend(b",x\n");
        assert!(matches!(
            detect_bytes(&b),
            Detection::Invalid {
                encoding: InputEncoding::Utf8,
                ..
            }
        ));
    }

    #[test]
    fn cp932_is_shift_jis_and_its_extensions_are_ambiguous() {
        let plain = cp932("氏名\n佐藤　花子,ｻﾄｳ\n");
        assert_eq!(
            detect_bytes(&plain),
            Detection::Decided(InputEncoding::ShiftJis)
        );
        // 髙 (an IBM extension in CP932) is another kanji in JIS X 0213.
        let ext = cp932("氏名\n佐藤　花子\n髙橋　一郎\n");
        let Detection::Ambiguous { offset } = detect_bytes(&ext) else {
            panic!("not ambiguous")
        };
        assert_eq!(line_of(&ext[..], offset).unwrap(), 3);
    }

    #[test]
    fn symbols_the_two_tables_map_apart_are_not_ambiguous() {
        let b = cp932("住所\n府中市宮西町２－１～３\n");
        assert_eq!(
            detect_bytes(&b),
            Detection::Decided(InputEncoding::ShiftJis)
        );
        let count = (0x81..=0x9Fu8)
            .chain(0xE0..=0xFC)
            .flat_map(|l| (0x40..=0xFCu8).map(move |t| (l, t)))
            .filter(|&(l, t)| reads_differently(l, t))
            .count();
        assert_eq!(count, 2642);
    }

    #[test]
    fn jis_x_0213_only_codes_make_shift_jis_2004() {
        // A code CP932 does not have but JIS X 0213 does.
        let (lead, trail) = (0x81..=0x9Fu8)
            .chain(0xE0..=0xFC)
            .flat_map(|l| (0x40..=0xFCu8).map(move |t| (l, t)))
            .find(|&(l, t)| {
                sjis2004::decode_pair(l, t).is_some()
                    && SHIFT_JIS.decode_without_bom_handling(&[l, t]).1
            })
            .unwrap();
        let mut b = cp932("氏名\n佐藤　");
        b.extend([lead, trail]);
        b.extend(b"\n");
        assert_eq!(
            detect_bytes(&b),
            Detection::Decided(InputEncoding::ShiftJis2004)
        );
        // Read as CP932 it fails at that code, not replaced.
        let mut out = String::new();
        let e = Cp932Reader::new(&b[..])
            .read_to_string(&mut out)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string().contains(&format!("byte {}", b.len() - 3)),
            "{e}"
        );
    }

    #[test]
    fn cp932_reader_decodes_across_small_reads() {
        let text = "宛名番号,氏名\n1,髙橋　﨑子ｱｲｳ\n".repeat(500);
        let bytes = cp932(&text);
        let mut r = Cp932Reader::new(&bytes[..]);
        let mut out = Vec::new();
        let mut buf = [0u8; 5];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(String::from_utf8(out).unwrap(), text);
    }

    #[test]
    fn cp932_reader_ends_cleanly_without_a_final_newline_and_after_the_end() {
        let bytes = cp932("氏名\n髙橋　﨑子");
        let mut r = Cp932Reader::new(&bytes[..]);
        let mut out = Vec::new();
        let mut one = [0u8; 1];
        loop {
            let n = r.read(&mut one).unwrap();
            if n == 0 {
                break;
            }
            out.push(one[0]);
        }
        assert_eq!(String::from_utf8(out).unwrap(), "氏名\n髙橋　﨑子");
        // Read again after the end (as a CSV reader does): still the end.
        assert_eq!(r.read(&mut one).unwrap(), 0);
        assert_eq!(r.read(&mut [0u8; 64]).unwrap(), 0);
        // A lead byte cut off by the end of the file is an error, not a panic.
        let mut cut = cp932("氏名\n佐藤");
        cut.pop();
        let mut s = String::new();
        let e = Cp932Reader::new(&cut[..])
            .read_to_string(&mut s)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn detection_does_not_depend_on_chunk_boundaries() {
        let mut b = cp932("氏名\n佐藤　花子\n");
        b.extend("東京都府中市".as_bytes());
        let whole = detect_bytes(&b);
        for cut in 1..b.len() {
            let mut d = Detector::default();
            d.feed(&b[..cut]);
            d.feed(&b[cut..]);
            assert_eq!(d.finish(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn nothing_decodes_reports_the_furthest() {
        // Shift_JIS up to a byte none of the three has.
        let mut b = cp932("氏名\n佐藤　花子\n");
        let at = b.len();
        b.extend([0xFD, b'\n']);
        assert_eq!(
            detect_bytes(&b),
            Detection::Invalid {
                encoding: InputEncoding::ShiftJis,
                offset: at as u64
            }
        );
    }
}
