//! `machi import`: the migration layout into a tenant, streaming, with a
//! validation report, all or nothing.
//!
//! Every row is validated (every field with the domain's rules, the order
//! and contiguity of 宛名番号 + 履歴番号, households against households.csv,
//! the manifest's counts and digests) and every problem reported with file,
//! row and column, in Japanese and English. Everything is loaded in ONE
//! transaction, and only if there is no problem: an interruption (or any
//! error) leaves the tenant exactly as it was, and the import is simply run
//! again. Into a tenant without history (a full load) the files are read
//! once, validated as they are written (`single_pass`, with
//! `records::BulkLoad`); a difference load reads them twice, validating
//! first. Re-running an import that
//! was loaded changes nothing (its digest is recorded). A file whose rows
//! continue histories already in the tenant is a difference load: rows
//! already present must be identical, new rows must continue each
//! person's 履歴番号. Memory stays flat: rows are streamed, and only one
//! entry per household is held for the cross-check.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sha2::{Digest, Sha256};

use machi_domain::change::HistoryRow;
use machi_domain::dates::EraTable;
use machi_domain::ids::MunicipalityCode;

use super::layout::{self, *};
use super::manifest::{Manifest, digest_file};
use crate::service::{Actor, Registry, ServiceError};
use crate::store::records::{self, BulkLoad, HistoryEncoder};
use crate::store::{BulkRows, Param, StoreError, Tx};

/// The character encoding of the input files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputEncoding {
    /// Decided from every byte of each file (see `migration::encoding`):
    /// UTF-8, Shift_JIS or Shift_JIS-2004 where only one reads the file as
    /// it is; a broken or ambiguous file is refused, naming the line.
    Auto,
    #[value(alias = "utf-8")]
    Utf8,
    /// Shift_JIS as Windows and most municipal systems write it (CP932).
    #[value(name = "shift_jis", alias = "shift-jis")]
    ShiftJis,
    /// Shift_JIS-2004 (JIS X 0213:2004), with the characters CP932 lacks.
    #[value(name = "shift_jis_2004", alias = "shift-jis-2004")]
    ShiftJis2004,
}

/// One problem found in the input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    /// Line in the file (the header is line 1); 0 for the file as a whole.
    pub row: u64,
    pub column: String,
    pub code: String,
    pub message_ja: String,
    pub message_en: String,
}

/// As a report line: `file:row column: Japanese / English`.
impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} {}: {} / {}",
            self.file, self.row, self.column, self.message_ja, self.message_en
        )
    }
}

/// How an import ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Loaded, in one transaction.
    Imported,
    /// Valid, and `--validate-only` was asked: nothing written.
    Validated,
    /// This exact input was imported before: nothing changed.
    AlreadyImported,
    /// Everything in the input (rows, support measures, certificates) is
    /// in the tenant already: nothing was written or recorded.
    Unchanged,
    /// Problems were found: nothing written.
    Refused,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub outcome: Outcome,
    pub encoding: Option<String>,
    /// Problems, the first `max_reported` of them.
    pub problems: Vec<Problem>,
    pub problem_count: u64,
    pub persons: u64,
    pub history_rows: u64,
    pub households: u64,
    /// Rows written (less than `history_rows` in a difference load).
    pub rows_written: u64,
    /// Rows that were already present, identical.
    pub rows_already_present: u64,
    /// Before the load: reading every file for its digest and encoding,
    /// and for a difference load (or `--validate-only`) the validation
    /// pass. A full load validates while it writes (`load_seconds`).
    pub validate_seconds: f64,
    pub load_seconds: f64,
    /// A full load: validated while written, in one pass.
    pub one_pass: bool,
}

impl ImportReport {
    /// The report on validated input, nothing written yet.
    fn of(v: &Validated, problems: Problems, outcome: Outcome, validate_seconds: f64) -> Self {
        ImportReport {
            outcome,
            encoding: v.encoding.map(str::to_string),
            problems: problems.list,
            problem_count: problems.count,
            persons: v.persons,
            history_rows: v.history_rows,
            households: v.households,
            rows_written: 0,
            rows_already_present: 0,
            validate_seconds,
            load_seconds: 0.0,
            one_pass: false,
        }
    }
}

/// Which pass an import is in, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Validate,
    Load,
}

/// Told, now and then, how far a pass has read: (phase, bytes read of
/// residents.csv, its size in bytes).
pub type Progress = std::sync::Arc<dyn Fn(Phase, u64, u64) + Send + Sync>;

#[derive(Clone)]
pub struct ImportOptions {
    pub encoding: InputEncoding,
    pub validate_only: bool,
    /// How many problems to keep in detail (all are counted).
    pub max_reported: usize,
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("encoding", &self.encoding)
            .field("validate_only", &self.validate_only)
            .field("max_reported", &self.max_reported)
            .finish()
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            encoding: InputEncoding::Auto,
            validate_only: false,
            max_reported: 1000,
            progress: None,
        }
    }
}

/// Reports progress every so many rows.
struct Ticker {
    progress: Option<Progress>,
    phase: Phase,
    total: u64,
    rows: u64,
}

impl Ticker {
    fn new(progress: &Option<Progress>, phase: Phase, path: &Path) -> Self {
        Ticker {
            progress: progress.clone(),
            phase,
            total: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            rows: 0,
        }
    }

    fn tick(&mut self, byte: u64) {
        self.rows += 1;
        if self.rows.is_multiple_of(8192)
            && let Some(p) = &self.progress
        {
            p(self.phase, byte, self.total);
        }
    }

    fn done(&self) {
        if let Some(p) = &self.progress {
            p(self.phase, self.total, self.total);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A row contradicts the tenant's data; the load was rolled back.
    #[error("{}", .0.message_en)]
    Conflict(Box<Problem>),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        ImportError::Service(e.into())
    }
}

/// The files of one import, found by name in the given paths.
#[derive(Debug, Default, Clone)]
struct Inputs {
    residents: Option<PathBuf>,
    households: Option<PathBuf>,
    support_measures: Option<PathBuf>,
    certificates: Option<PathBuf>,
    manifest: Option<PathBuf>,
    codes: Option<PathBuf>,
    /// Each data file as first read ([`scan_inputs`]).
    scanned: Vec<(PathBuf, Scanned)>,
}

/// A data file as first read.
#[derive(Debug, Clone)]
struct Scanned {
    /// SHA-256 (hex) and size.
    digest: (String, u64),
    /// The encoding detected (`--encoding auto`).
    encoding: Option<InputEncoding>,
}

impl Inputs {
    /// The data files present, by layout name.
    fn data_files(&self) -> Vec<(&'static str, PathBuf)> {
        [
            (RESIDENTS_FILE, &self.residents),
            (HOUSEHOLDS_FILE, &self.households),
            (SUPPORT_MEASURES_FILE, &self.support_measures),
            (CERTIFICATES_FILE, &self.certificates),
            (CODES_FILE, &self.codes),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.clone().map(|p| (n, p)))
        .collect()
    }

    fn scanned(&self, path: &Path) -> Option<&Scanned> {
        self.scanned.iter().find(|(p, _)| p == path).map(|(_, s)| s)
    }

    /// The encoding `path` is read in.
    fn encoding_of(&self, path: &Path, named: InputEncoding) -> InputEncoding {
        self.scanned(path).and_then(|s| s.encoding).unwrap_or(named)
    }
}

/// What the input's bytes are.
#[derive(Debug, Clone)]
struct InputDigest {
    /// residents.csv's SHA-256 and size: the rows are hashed again as they
    /// are loaded, so a file that changes meanwhile is caught.
    residents: (String, u64),
    /// The SHA-256 of every file's name and SHA-256: the input's identity,
    /// recorded once imported (a re-run of the same files is a no-op; a
    /// changed side file makes another input).
    identity: String,
}

/// Reads every data file once: its SHA-256, and with `--encoding auto` its
/// encoding, from all its bytes ([`super::encoding`]). A file that cannot be
/// read, or whose encoding is broken or ambiguous, is a problem.
fn scan_inputs(
    inputs: &mut Inputs,
    named: InputEncoding,
    problems: &mut Problems,
) -> Option<InputDigest> {
    use super::encoding::Detection;
    let mut identity = Sha256::new();
    let mut residents = None;
    for (name, path) in inputs.data_files() {
        let detect = named == InputEncoding::Auto;
        let scanned = scan_file(&path, detect);
        let ((sha, bytes), detection) = match scanned {
            Ok(x) => x,
            Err(e) => {
                problems.push(
                    name,
                    0,
                    "",
                    "unreadable",
                    format!("読めません: {e}"),
                    format!("cannot read: {e}"),
                );
                continue;
            }
        };
        let detected = match &detection {
            Some(Detection::Decided(e)) => Some(*e),
            _ => None,
        };
        // The encoding read in is part of the input: the same bytes read
        // in another encoding are other data.
        let read_as = detected.unwrap_or(named);
        identity.update(format!("{name}\0{sha}\0{read_as:?}\n").as_bytes());
        if name == RESIDENTS_FILE {
            residents = Some((sha.clone(), bytes));
        }
        inputs.scanned.push((
            path.clone(),
            Scanned {
                digest: (sha, bytes),
                encoding: detected,
            },
        ));
        let line_of = |offset| {
            File::open(&path)
                .and_then(|f| super::encoding::line_of(f, offset))
                .unwrap_or(0)
        };
        match detection {
            None | Some(Detection::Decided(_)) => {}
            Some(Detection::Ambiguous { offset }) => {
                let line = line_of(offset);
                problems.push(
                    name,
                    line,
                    "",
                    "encoding_ambiguous",
                    format!(
                        "{line} 行目から、Shift_JIS（CP932）と Shift_JIS-2004（JIS X 0213）で読みが異なる文字があります。--encoding shift_jis か --encoding shift_jis_2004 で文字コードを指定してください。"
                    ),
                    format!(
                        "from line {line} the file holds characters that Shift_JIS (CP932) and Shift_JIS-2004 (JIS X 0213) read differently: name the encoding with --encoding shift_jis or --encoding shift_jis_2004"
                    ),
                );
            }
            Some(Detection::Invalid { encoding, offset }) => {
                let line = line_of(offset);
                let label = encoding_label(encoding);
                problems.push(
                    name,
                    line,
                    "",
                    "encoding_invalid",
                    format!(
                        "{line} 行目（{offset} バイト目）に {label} として読めないバイトがあります。ファイルは {label} と見られますが、そこが壊れています（UTF-8・Shift_JIS・Shift_JIS-2004 のどれとしても全体を読めません）。"
                    ),
                    format!(
                        "line {line} (byte {offset}) is not valid {label}: the file looks like {label} but is damaged there (it is not wholly UTF-8, Shift_JIS or Shift_JIS-2004)"
                    ),
                );
            }
        }
    }
    residents.map(|residents| InputDigest {
        residents,
        identity: hex::encode(identity.finalize()),
    })
}

/// A file's (SHA-256, size) and, when `detect`, its encoding: the bytes are
/// hashed on this thread and examined for their encoding on another.
fn scan_file(
    path: &Path,
    detect: bool,
) -> std::io::Result<((String, u64), Option<super::encoding::Detection>)> {
    use super::encoding::Detector;
    let mut f = File::open(path)?;
    let mut sha = Sha256::new();
    let mut total = 0u64;
    let (to_detector, chunks) = mpsc::sync_channel::<Vec<u8>>(4);
    let (to_reader, spent) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let detector = detect.then(|| {
            scope.spawn(move || {
                let mut d = Detector::default();
                for chunk in chunks {
                    d.feed(&chunk);
                    let _ = to_reader.send(chunk);
                }
                d.finish()
            })
        });
        let mut to_detector = detector.as_ref().map(|_| to_detector);
        loop {
            let mut buf = spent.try_recv().unwrap_or_else(|_| vec![0u8; 1 << 18]);
            buf.resize(1 << 18, 0);
            let n = read_full(&mut f, &mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            sha.update(&buf);
            total += n as u64;
            if let Some(tx) = &to_detector
                && tx.send(buf).is_err()
            {
                to_detector = None;
            }
        }
        drop(to_detector);
        let detection = match detector {
            Some(h) => Some(
                h.join()
                    .map_err(|_| std::io::Error::other("the encoding check panicked"))?,
            ),
            None => None,
        };
        Ok(((hex::encode(sha.finalize()), total), detection))
    })
}

/// How an encoding is named in reports.
fn encoding_label(e: InputEncoding) -> &'static str {
    match e {
        InputEncoding::Auto | InputEncoding::Utf8 => "UTF-8",
        InputEncoding::ShiftJis => "Shift_JIS (CP932)",
        InputEncoding::ShiftJis2004 => "Shift_JIS-2004",
    }
}

struct Problems {
    list: Vec<Problem>,
    count: u64,
    max: usize,
}

impl Problems {
    /// None yet; `max` of them kept in detail.
    fn new(max: usize) -> Self {
        Problems {
            list: Vec::new(),
            count: 0,
            max,
        }
    }

    fn push(
        &mut self,
        file: &str,
        row: u64,
        column: &str,
        code: &str,
        ja: impl Into<String>,
        en: impl Into<String>,
    ) {
        self.add(Problem {
            file: file.to_string(),
            row,
            column: column.to_string(),
            code: code.to_string(),
            message_ja: ja.into(),
            message_en: en.into(),
        });
    }

    fn add(&mut self, p: Problem) {
        self.count += 1;
        if self.list.len() < self.max {
            self.list.push(p);
        }
    }
}

fn find_inputs(paths: &[PathBuf], problems: &mut Problems) -> Inputs {
    let mut inputs = Inputs::default();
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            for name in [
                RESIDENTS_FILE,
                HOUSEHOLDS_FILE,
                SUPPORT_MEASURES_FILE,
                CERTIFICATES_FILE,
                MANIFEST_FILE,
                CODES_FILE,
            ] {
                let f = p.join(name);
                if f.exists() {
                    files.push(f);
                }
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            problems.push(
                &p.display().to_string(),
                0,
                "",
                "file_not_found",
                "ファイルが見つかりません。",
                "file not found",
            );
        }
    }
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let slot = match name.as_str() {
            RESIDENTS_FILE => &mut inputs.residents,
            HOUSEHOLDS_FILE => &mut inputs.households,
            SUPPORT_MEASURES_FILE => &mut inputs.support_measures,
            CERTIFICATES_FILE => &mut inputs.certificates,
            MANIFEST_FILE => &mut inputs.manifest,
            CODES_FILE => &mut inputs.codes,
            _ => {
                problems.push(
                    &name,
                    0,
                    "",
                    "unknown_file",
                    format!("移行レイアウトにないファイル名です（{RESIDENTS_FILE} などを指定してください）。"),
                    format!("not a file of the migration layout (expected {RESIDENTS_FILE}, …)"),
                );
                continue;
            }
        };
        *slot = Some(f);
    }
    if inputs.residents.is_none() && problems.count == 0 {
        problems.push(
            RESIDENTS_FILE,
            0,
            "",
            "file_missing",
            format!("{RESIDENTS_FILE} がありません。"),
            format!("{RESIDENTS_FILE} is missing"),
        );
    }
    inputs
}

/// SHA-256 and size of the bytes read through a [`DigestingReader`].
#[derive(Default)]
struct ReadDigest {
    sha: Sha256,
    bytes: u64,
}

type SharedDigest = Arc<Mutex<ReadDigest>>;

/// Hashes the bytes of a file as they are read, so that a pass over a file
/// also tells whether it is the file that was digested before.
struct DigestingReader {
    inner: File,
    digest: SharedDigest,
}

impl Read for DigestingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut d) = self.digest.lock() {
            d.sha.update(&buf[..n]);
            d.bytes += n as u64;
        }
        Ok(n)
    }
}

/// The (hex SHA-256, size) of what was read through `digest`.
fn read_digest(digest: &SharedDigest) -> Option<(String, u64)> {
    let d = digest.lock().ok()?;
    Some((hex::encode(d.sha.clone().finalize()), d.bytes))
}

/// Opens a file as UTF-8 text, transcoding Shift_JIS when asked or detected;
/// with `digest`, every byte read is hashed into it.
fn open_text(
    path: &Path,
    encoding: InputEncoding,
    digest: Option<&SharedDigest>,
) -> std::io::Result<(Box<dyn Read + Send>, &'static str)> {
    let f = File::open(path)?;
    let mut f: Box<dyn Read + Send> = match digest {
        Some(d) => Box::new(DigestingReader {
            inner: f,
            digest: d.clone(),
        }),
        None => Box::new(f),
    };
    let mut head = vec![0u8; 64 * 1024];
    let n = read_full(&mut f, &mut head)?;
    head.truncate(n);
    let utf8 = match encoding {
        InputEncoding::Utf8 => true,
        InputEncoding::ShiftJis | InputEncoding::ShiftJis2004 => false,
        InputEncoding::Auto => match std::str::from_utf8(&head) {
            Ok(_) => true,
            // A multi-byte character cut at the end of the sample is still UTF-8.
            Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
        },
    };
    let start = if utf8 && head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        3
    } else {
        0
    };
    let rest = std::io::Cursor::new(head).chain(f);
    let mut rest: Box<dyn Read + Send> = Box::new(rest);
    if start > 0 {
        let mut bom = [0u8; 3];
        rest.read_exact(&mut bom)?;
    }
    if utf8 {
        Ok((Box::new(BufReader::with_capacity(1 << 20, rest)), "utf-8"))
    } else if encoding == InputEncoding::ShiftJis2004 {
        let decoded = super::sjis2004::Sjis2004Reader::new(rest);
        Ok((
            Box::new(BufReader::with_capacity(1 << 20, decoded)),
            "shift_jis_2004",
        ))
    } else {
        let decoded = super::encoding::Cp932Reader::new(rest);
        Ok((
            Box::new(BufReader::with_capacity(1 << 20, decoded)),
            "shift_jis",
        ))
    }
}

/// A row that could not be read: bytes not in the file's encoding (named by
/// the operator, or a file that changed after it was scanned), or CSV
/// that breaks off. (code, Japanese, English).
fn read_error(e: &csv::Error) -> (&'static str, String, String) {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => (
            "encoding_invalid",
            "UTF-8 として読めないバイトがあります。別の文字コードなら --encoding で指定してください。".into(),
            "bytes here are not UTF-8: if the file is in another encoding, name it with --encoding".into(),
        ),
        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => (
            "encoding_invalid",
            format!("指定の文字コードとして読めません: {io}"),
            format!("not in the named encoding: {io}"),
        ),
        _ => (
            "unreadable",
            format!("CSV として読めません（途中で切れている可能性があります）: {e}"),
            format!("not readable as CSV (the file may be truncated): {e}"),
        ),
    }
}

fn read_full(f: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn csv_reader(r: Box<dyn Read + Send>) -> csv::Reader<Box<dyn Read + Send>> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(r)
}

/// Whether residents.csv's header ends with the support-measure flag of a
/// file-linkage extract, after the layout's columns.
fn has_support_flag(reader: &mut csv::Reader<Box<dyn Read + Send>>) -> bool {
    reader.headers().is_ok_and(|h| {
        h.len() == RESIDENT_COLUMNS.len() + 1
            && h.get(RESIDENT_COLUMNS.len()) == Some(layout::SUPPORT_FLAG_COLUMN.0)
    })
}

/// Checks a header row against the layout's columns.
fn check_header(
    file: &str,
    reader: &mut csv::Reader<Box<dyn Read + Send>>,
    columns: &[(&str, &str)],
    problems: &mut Problems,
) -> bool {
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            problems.push(
                file,
                1,
                "",
                "unreadable",
                format!("見出し行を読めません: {e}"),
                format!("cannot read the header: {e}"),
            );
            return false;
        }
    };
    let expected: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let got: Vec<&str> = header.iter().collect();
    if got != expected {
        let at = expected
            .iter()
            .zip(got.iter().chain(std::iter::repeat(&"")))
            .position(|(e, g)| e != g)
            .unwrap_or(expected.len().min(got.len()));
        let want = expected.get(at).copied().unwrap_or("(end)");
        let found = got.get(at).copied().unwrap_or("(end)");
        problems.push(
            file,
            1,
            want,
            "header_mismatch",
            format!("見出し行が移行レイアウトと異なります（{}列目: 期待「{want}」、実際「{found}」）。", at + 1),
            format!("the header differs from the layout (column {}: expected {want:?}, found {found:?})", at + 1),
        );
        return false;
    }
    true
}

/// Per household, from each person's latest row: members and heads.
#[derive(Default)]
struct HouseholdCheck {
    members: u32,
    heads: u32,
    head: Option<NumberKey>,
}

/// A 世帯番号 or 宛名番号 (1–15 digits, leading zeros significant) packed
/// into a word: a million households cost a few MiB to cross-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct NumberKey(u64);

impl NumberKey {
    /// None unless `s` is 1–15 ASCII digits.
    fn of(s: &str) -> Option<NumberKey> {
        if s.is_empty() || s.len() > 15 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = s.parse().ok()?;
        Some(NumberKey(((s.len() as u64) << 56) | value))
    }
}

impl std::fmt::Display for NumberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = (self.0 >> 56) as usize;
        write!(f, "{:0len$}", self.0 & ((1 << 56) - 1))
    }
}

/// What pass 1 learned.
#[derive(Default)]
struct Validated {
    persons: u64,
    history_rows: u64,
    households: u64,
    max_change_id: i64,
    max_addressee_serial: i64,
    max_household_serial: i64,
    encoding: Option<&'static str>,
    /// The side files, validated (loaded with the residents).
    measures: Vec<super::side::MeasureRow>,
    certificates: Vec<super::side::CertificateRow>,
    /// 取消対象異動番号 that name no change in the file: (line, change id).
    /// A full load refuses them; a difference load looks for them in the
    /// tenant.
    unresolved_cancels: Vec<(u64, i64)>,
    /// With `--validate-only`: every 宛名番号 in residents.csv, sorted (the
    /// side rows' persons are looked up in it, then in the tenant).
    file_persons: Vec<NumberKey>,
}

/// The items all rows of one change share (異動事由 to 取消対象異動番号, as
/// written: dates keep the form they were entered in), hashed.
fn change_fingerprint(fields: &[&str]) -> u64 {
    use std::hash::{Hash, Hasher};
    static RANGE: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
    let (from, to) = *RANGE.get_or_init(|| {
        let at = |name| {
            RESIDENT_COLUMNS
                .iter()
                .position(|(c, _)| *c == name)
                .unwrap_or(0)
        };
        (at("reason"), at("cancels"))
    });
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in fields.get(from..=to).unwrap_or_default() {
        f.hash(&mut h);
    }
    h.finish()
}

fn serial_of(number: &str) -> i64 {
    // Numbers allocated by machi are 9-digit serials plus a check digit.
    if number.len() == 10 {
        number[..9].parse().unwrap_or(0)
    } else {
        0
    }
}

/// What the reading pass does with each row while the input is valid so far
/// (a full load writes it).
trait RowSink {
    fn row(&mut self, line: u64, row: &HistoryRow) -> Flow;
    /// A problem was found: no more rows will come.
    fn stop(&mut self) {}
}

/// What a [`RowSink`] wants next.
enum Flow {
    Continue,
    /// Keep validating, but send no more rows.
    StopWriting,
    /// Stop reading (the writer failed).
    Abort,
}

/// Validation only.
struct NoSink;

impl RowSink for NoSink {
    fn row(&mut self, _: u64, _: &HistoryRow) -> Flow {
        Flow::StopWriting
    }
}

/// Reads and checks every file. Each row of residents.csv that is valid, as
/// is everything before it, is handed to `sink`; `read` hashes the bytes of
/// residents.csv as they are read.
#[allow(clippy::too_many_arguments)]
fn validate(
    inputs: &Inputs,
    eras: &EraTable,
    opts: &ImportOptions,
    phase: Phase,
    problems: &mut Problems,
    sink: &mut dyn RowSink,
    read: Option<&SharedDigest>,
) -> Validated {
    let mut v = Validated::default();
    let Some(path) = &inputs.residents else {
        return v;
    };
    let manifest = inputs.manifest.as_ref().and_then(|m| {
        let text = match std::fs::read_to_string(m) {
            Ok(t) => t,
            Err(e) => {
                problems.push(
                    MANIFEST_FILE,
                    0,
                    "",
                    "unreadable",
                    format!("manifest.json を読めません: {e}"),
                    format!("cannot read manifest.json: {e}"),
                );
                return None;
            }
        };
        match serde_json::from_str::<Manifest>(&text) {
            Ok(man) => Some(man),
            Err(e) => {
                problems.push(
                    MANIFEST_FILE,
                    0,
                    "",
                    "invalid_manifest",
                    format!("manifest.json を読めません: {e}"),
                    format!("manifest.json is not valid: {e}"),
                );
                None
            }
        }
    });
    if let Some(m) = &manifest {
        if m.layout != LAYOUT_VERSION {
            problems.push(
                MANIFEST_FILE,
                0,
                "layout",
                "layout_version",
                format!("移行レイアウトの版が違います: {}", m.layout),
                format!("layout version {} is not {LAYOUT_VERSION}", m.layout),
            );
        }
        for f in &m.files {
            let path = match f.name.as_str() {
                RESIDENTS_FILE => inputs.residents.as_ref(),
                HOUSEHOLDS_FILE => inputs.households.as_ref(),
                SUPPORT_MEASURES_FILE => inputs.support_measures.as_ref(),
                CERTIFICATES_FILE => inputs.certificates.as_ref(),
                CODES_FILE => inputs.codes.as_ref(),
                _ => None,
            };
            let Some(path) = path else {
                problems.push(
                    &f.name,
                    0,
                    "",
                    "file_missing",
                    "manifest.json にあるファイルがありません。",
                    "a file listed in manifest.json is missing",
                );
                continue;
            };
            // Every data file was digested when first read.
            let digest = match inputs.scanned(path) {
                Some(s) => Ok(s.digest.clone()),
                None => digest_file(path),
            };
            match digest {
                Ok((sha, bytes)) if sha == f.sha256 && bytes == f.bytes => {}
                Ok((_, bytes)) => problems.push(
                    &f.name,
                    0,
                    "",
                    "file_altered",
                    format!("manifest.json と内容が一致しません（{bytes} バイト、期待 {} バイト）。ファイルが途中で切れているか、書き換えられています。", f.bytes),
                    format!("does not match manifest.json ({bytes} bytes, expected {}): the file is truncated or altered", f.bytes),
                ),
                Err(e) => problems.push(&f.name, 0, "", "unreadable", format!("読めません: {e}"), format!("cannot read: {e}")),
            }
        }
    }
    let (text, encoding) = match open_text(path, inputs.encoding_of(path, opts.encoding), read) {
        Ok(x) => x,
        Err(e) => {
            problems.push(
                RESIDENTS_FILE,
                0,
                "",
                "unreadable",
                format!("読めません: {e}"),
                format!("cannot read: {e}"),
            );
            return v;
        }
    };
    v.encoding = Some(encoding);
    let mut reader = csv_reader(text);
    // A file-linkage extract's residents.csv ends with the support-measure
    // flag (layout::SUPPORT_FLAG_COLUMN): accepted and ignored (the
    // measures themselves come from support_measures.csv).
    let flagged = has_support_flag(&mut reader);
    let mut columns: Vec<(&str, &str)> = RESIDENT_COLUMNS.to_vec();
    if flagged {
        columns.push(layout::SUPPORT_FLAG_COLUMN);
    }
    if !check_header(RESIDENTS_FILE, &mut reader, &columns, problems) {
        return v;
    }
    let mut households: HashMap<NumberKey, HouseholdCheck> = HashMap::new();
    // Each change's shared items, and the cancellations to resolve.
    let mut changes: HashMap<i64, u64> = HashMap::new();
    let mut cancels: Vec<(u64, i64)> = Vec::new();
    let mut ticker = Ticker::new(&opts.progress, phase, path);
    let mut writing = true;
    let mut prev: Option<(String, i64)> = None;
    let mut latest: Option<HistoryRow> = None;
    let finish_person =
        |latest: &mut Option<HistoryRow>, households: &mut HashMap<NumberKey, HouseholdCheck>| {
            // 世帯番号 and 宛名番号 are digits once parsed.
            if let Some(r) = latest.take()
                && r.record.status.is_resident()
                && let Some(key) = NumberKey::of(r.record.household_number.as_str())
            {
                let h = households.entry(key).or_default();
                h.members += 1;
                if r.record.relationship.is_head() {
                    h.heads += 1;
                    h.head = NumberKey::of(r.record.addressee_number.as_str());
                }
            }
        };
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let (code, ja, en) = read_error(&e);
                problems.push(RESIDENTS_FILE, line, "", code, ja, en);
                break;
            }
        }
        ticker.tick(reader.position().byte());
        v.history_rows += 1;
        let mut fields: Vec<&str> = record.iter().collect();
        if flagged && fields.len() == columns.len() {
            fields.pop();
        }
        let row = match layout::parse_resident(&fields, eras) {
            Ok(r) => r,
            Err(list) => {
                for p in list {
                    problems.push(
                        RESIDENTS_FILE,
                        line,
                        p.column,
                        p.code,
                        p.message_ja,
                        p.message_en,
                    );
                }
                // Keep checking order with what can be read.
                let a = fields.first().map(|s| s.to_string()).unwrap_or_default();
                let n = fields.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                if prev.as_ref().is_none_or(|(pa, _)| *pa != a) {
                    finish_person(&mut latest, &mut households);
                    v.persons += 1;
                }
                prev = Some((a, n));
                continue;
            }
        };
        let a = row.record.addressee_number.to_string();
        let n = row.history_number;
        match &prev {
            Some((pa, pn)) if *pa == a => {
                if pn.checked_add(1) != Some(n) {
                    let (ja, en, code) = if n == *pn {
                        (
                            "宛名番号と履歴番号の組が重複しています。",
                            "duplicate 宛名番号 + 履歴番号",
                            "duplicate_key",
                        )
                    } else {
                        (
                            "履歴番号が連番になっていません。",
                            "history numbers are not consecutive",
                            "history_gap",
                        )
                    };
                    problems.push(
                        RESIDENTS_FILE,
                        line,
                        "history_number",
                        code,
                        format!("{ja}（前の行 {pn}、この行 {n}）"),
                        format!("{en} (previous row {pn}, this row {n})"),
                    );
                }
            }
            Some((pa, _)) if *pa > a => {
                problems.push(
                    RESIDENTS_FILE,
                    line,
                    "addressee_number",
                    "not_sorted",
                    format!("宛名番号の昇順に並んでいません（前の行 {pa}）。"),
                    format!("rows are not sorted by 宛名番号 (previous row {pa})"),
                );
            }
            _ => {
                finish_person(&mut latest, &mut households);
                v.persons += 1;
                if opts.validate_only
                    && let Some(k) = NumberKey::of(&a)
                {
                    v.file_persons.push(k);
                }
            }
        }
        let fingerprint = change_fingerprint(&fields);
        match changes.entry(row.change.change_id) {
            std::collections::hash_map::Entry::Occupied(e) if *e.get() != fingerprint => {
                problems.push(
                    RESIDENTS_FILE,
                    line,
                    "change_id",
                    "change_inconsistent",
                    format!(
                        "異動番号 {} の行どうしで、異動事由・異動日・処理日などが食い違っています。",
                        row.change.change_id
                    ),
                    format!(
                        "rows of change {} disagree on its reason, dates or other items",
                        row.change.change_id
                    ),
                );
            }
            std::collections::hash_map::Entry::Occupied(_) => {}
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(fingerprint);
            }
        }
        if let Some(target) = row.change.cancels {
            cancels.push((line, target));
        }
        v.max_change_id = v.max_change_id.max(row.change.change_id);
        v.max_addressee_serial = v.max_addressee_serial.max(serial_of(&a));
        v.max_household_serial = v
            .max_household_serial
            .max(serial_of(row.record.household_number.as_str()));
        prev = Some((a, n));
        if writing {
            if problems.count > 0 {
                writing = false;
                sink.stop();
            } else {
                match sink.row(line, &row) {
                    Flow::Continue => {}
                    Flow::StopWriting => writing = false,
                    Flow::Abort => return v,
                }
            }
        }
        latest = Some(row);
    }
    finish_person(&mut latest, &mut households);
    ticker.done();
    v.unresolved_cancels = cancels
        .into_iter()
        .filter(|(_, target)| !changes.contains_key(target))
        .collect();
    v.file_persons.sort_unstable();
    drop(changes);
    if let Some(m) = &manifest
        && let Some(f) = m.files.iter().find(|f| f.name == RESIDENTS_FILE)
        && f.rows != v.history_rows
    {
        problems.push(
            RESIDENTS_FILE,
            0,
            "",
            "row_count",
            format!(
                "行数が manifest.json と違います（{}、期待 {}）。",
                v.history_rows, f.rows
            ),
            format!("{} rows, manifest.json says {}", v.history_rows, f.rows),
        );
    }
    for (h, c) in &households {
        if c.heads > 1 {
            problems.push(
                RESIDENTS_FILE,
                0,
                "relationship",
                "head_count",
                format!("世帯 {h} に世帯主が {} 人います。", c.heads),
                format!("household {h} has {} heads", c.heads),
            );
        }
    }
    v.households = households.len() as u64;
    if let Some(path) = &inputs.households {
        check_households(
            path,
            inputs.encoding_of(path, opts.encoding),
            &mut households,
            problems,
        );
    }
    for (name, path, columns) in [
        (
            SUPPORT_MEASURES_FILE,
            &inputs.support_measures,
            SUPPORT_MEASURE_COLUMNS,
        ),
        (CERTIFICATES_FILE, &inputs.certificates, CERTIFICATE_COLUMNS),
    ] {
        let Some(path) = path else { continue };
        // Hashed as read: the rows validated (and loaded) must be the bytes
        // the input was identified by.
        let read: SharedDigest = Arc::default();
        match open_text(path, inputs.encoding_of(path, opts.encoding), Some(&read)) {
            Ok((text, _)) => {
                let mut r = csv_reader(text);
                if !check_header(name, &mut r, columns, problems) {
                    continue;
                }
                let before = problems.count;
                // Keys (支援措置番号, 発行番号) seen in this file.
                let mut keys = std::collections::HashSet::new();
                for (i, rec) in r.records().enumerate() {
                    let row = i as u64 + 2;
                    let rec = match rec {
                        Ok(rec) => rec,
                        // A read that failed does not go on.
                        Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                            let (code, ja, en) = read_error(&e);
                            problems.push(name, row, "", code, ja, en);
                            break;
                        }
                        Err(e) => {
                            let (code, ja, en) = match read_error(&e) {
                                ("unreadable", _, _) => (
                                    "invalid_csv",
                                    format!("CSV として読めません: {e}"),
                                    format!("not valid CSV: {e}"),
                                ),
                                other => other,
                            };
                            problems.push(name, row, "", code, ja, en);
                            continue;
                        }
                    };
                    let fields: Vec<&str> = rec.iter().collect();
                    let parsed = if name == SUPPORT_MEASURES_FILE {
                        super::side::measure_of(&fields).map(|m| {
                            let key = m.measure_id.to_string();
                            v.measures.push(m);
                            key
                        })
                    } else {
                        super::side::certificate_of(&fields).map(|c| {
                            let key = c.issue_number.clone();
                            v.certificates.push(c);
                            key
                        })
                    };
                    // A key twice, compared as read (1 and 01 are one).
                    if let Ok(key) = &parsed
                        && !keys.insert(key.clone())
                    {
                        problems.push(
                            name,
                            row,
                            columns[0].0,
                            "duplicate_key",
                            format!("{} {key} が重複しています。", columns[0].1),
                            format!("duplicate {} {key}", columns[0].0),
                        );
                    }
                    if let Err((column, code, ja, en)) = parsed {
                        problems.push(name, row, column, code, ja, en);
                    }
                }
                if problems.count == before
                    && let Some(first) = inputs.scanned(path)
                    && read_digest(&read).as_ref() != Some(&first.digest)
                {
                    problems.add(file_changed(name));
                }
            }
            Err(e) => problems.push(
                name,
                0,
                "",
                "unreadable",
                format!("読めません: {e}"),
                format!("cannot read: {e}"),
            ),
        }
    }
    v
}

/// Compares households.csv with the households derived from residents.csv.
fn check_households(
    path: &Path,
    encoding: InputEncoding,
    derived: &mut HashMap<NumberKey, HouseholdCheck>,
    problems: &mut Problems,
) {
    let text = match open_text(path, encoding, None) {
        Ok((t, _)) => t,
        Err(e) => {
            problems.push(
                HOUSEHOLDS_FILE,
                0,
                "",
                "unreadable",
                format!("読めません: {e}"),
                format!("cannot read: {e}"),
            );
            return;
        }
    };
    let mut reader = csv_reader(text);
    if !check_header(HOUSEHOLDS_FILE, &mut reader, HOUSEHOLD_COLUMNS, problems) {
        return;
    }
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let (code, ja, en) = read_error(&e);
                problems.push(HOUSEHOLDS_FILE, line, "", code, ja, en);
                break;
            }
        }
        let h = record.get(0).unwrap_or_default().to_string();
        let head = record.get(1).unwrap_or_default();
        let members: u32 = record.get(4).and_then(|m| m.parse().ok()).unwrap_or(0);
        match NumberKey::of(&h).and_then(|k| derived.remove(&k)) {
            None => problems.push(
                HOUSEHOLDS_FILE,
                line,
                "household_number",
                "broken_reference",
                format!("世帯 {h} に属する住民が residents.csv にいません。"),
                format!("household {h} has no resident in residents.csv"),
            ),
            Some(c) => {
                if c.members != members {
                    problems.push(HOUSEHOLDS_FILE, line, "members", "broken_reference", format!("世帯 {h} の世帯員数が residents.csv と違います（{members}、residents.csv では {}）。", c.members), format!("household {h}: {members} members, residents.csv has {}", c.members));
                }
                let same_head = match c.head {
                    Some(k) => NumberKey::of(head) == Some(k),
                    None => head.is_empty(),
                };
                if !same_head {
                    problems.push(
                        HOUSEHOLDS_FILE,
                        line,
                        "head_addressee_number",
                        "broken_reference",
                        format!("世帯 {h} の世帯主が residents.csv と違います。"),
                        format!("household {h}: the head differs from residents.csv"),
                    );
                }
            }
        }
    }
    for h in derived.keys() {
        problems.push(
            HOUSEHOLDS_FILE,
            0,
            "household_number",
            "broken_reference",
            format!("residents.csv の世帯 {h} が households.csv にありません。"),
            format!("household {h} of residents.csv is missing from households.csv"),
        );
    }
}

/// Imports `paths` (files of the layout, or directories holding them) into `tenant`.
///
/// A full load into a tenant without history reads the files once: each
/// row is validated and, while everything so far is valid, written, in one
/// transaction that is rolled back if any problem turns up (so nothing is
/// written, and every problem is still reported). Otherwise (validation
/// only, a re-run, a difference load) the files are validated first and
/// loaded after.
pub async fn import(
    registry: &Registry,
    tenant: &MunicipalityCode,
    paths: &[PathBuf],
    opts: &ImportOptions,
    actor: &Actor,
) -> Result<ImportReport, ImportError> {
    registry.ensure_tenant(tenant).await?;
    let started = Instant::now();
    let mut problems = Problems::new(opts.max_reported);
    let mut inputs = find_inputs(paths, &mut problems);
    let digest_before = if problems.count == 0 {
        scan_inputs(&mut inputs, opts.encoding, &mut problems)
    } else {
        None
    };
    if problems.count > 0 {
        return Ok(ImportReport::of(
            &Validated::default(),
            problems,
            Outcome::Refused,
            started.elapsed().as_secs_f64(),
        ));
    }
    let mut already_imported = false;
    if !opts.validate_only
        && problems.count == 0
        && let Some(digest) = &digest_before
    {
        let checked = started.elapsed().as_secs_f64();
        let pass = single_pass(registry, tenant, &inputs, digest, opts, actor).await?;
        let report = |v: Validated, problems: Problems, outcome| ImportReport {
            load_seconds: started.elapsed().as_secs_f64() - checked,
            one_pass: true,
            ..ImportReport::of(&v, problems, outcome, checked)
        };
        match pass {
            Pass::Loaded { v, written } => {
                let mut r = report(v, Problems::new(0), Outcome::Imported);
                r.rows_written = written;
                if written > 0 {
                    vacuum_after_load(registry, tenant).await;
                }
                return Ok(r);
            }
            Pass::Refused { v, problems } => return Ok(report(v, problems, Outcome::Refused)),
            Pass::Unchanged { v } => {
                return Ok(report(v, Problems::new(0), Outcome::Unchanged));
            }
            Pass::AlreadyImported => already_imported = true,
            Pass::NotEmpty => {}
        }
    }
    let eras = registry.eras().clone();
    let (validated, problems, inputs) = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || {
            let v = validate(
                &inputs,
                &eras,
                &opts,
                Phase::Validate,
                &mut problems,
                &mut NoSink,
                None,
            );
            (v, problems, inputs)
        })
        .await
        .map_err(|e| ImportError::from(StoreError::Task(e.to_string())))?
    };
    let validate_seconds = started.elapsed().as_secs_f64();
    let mut report = ImportReport::of(&validated, problems, Outcome::Refused, validate_seconds);
    if report.problem_count > 0 {
        return Ok(report);
    }
    if opts.validate_only {
        // What the load would refuse: a cancelled change neither in the
        // files nor in the tenant.
        if !validated.unresolved_cancels.is_empty() {
            let (t, unresolved) = (tenant.clone(), validated.unresolved_cancels.clone());
            let missing = registry
                .store()
                .read(Some(tenant), move |tx| missing_cancel(tx, &t, &unresolved))
                .await?;
            if let Some((line, target)) = missing {
                report.problem_count = 1;
                report.problems = vec![cancels_nothing(line, target)];
                return Ok(report);
            }
        }
        // And a person named by a side row in neither the files nor the
        // tenant.
        if let Some(p) = unknown_side_person(registry, tenant, &validated).await? {
            report.problem_count = 1;
            report.problems = vec![p];
            return Ok(report);
        }
        report.outcome = Outcome::Validated;
        return Ok(report);
    }
    if already_imported {
        report.outcome = Outcome::AlreadyImported;
        return Ok(report);
    }
    let Some(path) = inputs.residents.clone() else {
        return Ok(report);
    };
    let Some(digest) = digest_before else {
        return Ok(report);
    };
    let started = Instant::now();
    let encoding = inputs.encoding_of(&path, opts.encoding);
    let (t, eras) = (tenant.clone(), registry.eras().clone());
    let now = registry.clock().now().timestamp_micros();
    let actor2 = actor.clone();
    let progress = opts.progress.clone();
    let loaded = registry
        .store()
        .write(Some(tenant), move |tx| {
            let done = load(
                tx, &t, &path, encoding, &eras, &digest, &validated, &progress,
            )?;
            let Load::Done { written, present } = done else {
                return Ok(done);
            };
            // Support measures and certificates in the same transaction.
            let side = super::side::load(tx, &t, &validated.measures, &validated.certificates)?;
            if written == 0 && side == (0, 0) {
                // Nothing new: nothing recorded either.
                return Ok(Load::Unchanged { present });
            }
            finish_load(
                tx,
                &t,
                &digest.identity,
                &validated,
                now,
                &actor2,
                written,
                present,
            )
        })
        .await;
    let loaded = match loaded {
        Err(ImportError::Conflict(p)) => Load::Conflict(*p),
        other => other?,
    };
    report.load_seconds = started.elapsed().as_secs_f64();
    match loaded {
        Load::AlreadyImported => report.outcome = Outcome::AlreadyImported,
        Load::Unchanged { present } => {
            report.outcome = Outcome::Unchanged;
            report.rows_already_present = present;
        }
        Load::Done { written, present } => {
            report.outcome = Outcome::Imported;
            report.rows_written = written;
            report.rows_already_present = present;
            if written > 0 {
                vacuum_after_load(registry, tenant).await;
            }
        }
        Load::Conflict(p) => {
            report.problem_count = 1;
            report.problems = vec![p];
        }
    }
    Ok(report)
}

/// After a load that committed rows: the pages it wrote marked
/// all-visible for the planner (PostgreSQL; see
/// [`crate::store::Store::vacuum_after_load`]). The rows are committed
/// whatever happens here: a failure is logged, not returned, and
/// autovacuum gets there later.
async fn vacuum_after_load(registry: &Registry, tenant: &MunicipalityCode) {
    if registry.store().backend() != crate::store::Backend::Postgres {
        return;
    }
    let t = Instant::now();
    match registry.store().vacuum_after_load(tenant).await {
        Ok(()) => tracing::info!(
            seconds = t.elapsed().as_secs_f64(),
            "import: the loaded tables were vacuumed"
        ),
        Err(e) => tracing::warn!(error = %e, "import: the vacuum after the load failed"),
    }
}

/// How the single pass of a full load ended.
enum Pass {
    /// Validated, written and committed.
    Loaded { v: Validated, written: u64 },
    /// Problems were found; nothing was written.
    Refused { v: Validated, problems: Problems },
    /// This input was imported before; nothing was read.
    AlreadyImported,
    /// The files hold no rows; nothing was written or recorded.
    Unchanged { v: Validated },
    /// The tenant has history: not a full load; nothing was read.
    NotEmpty,
}

/// Why the single pass rolled its transaction back.
enum PassError {
    Import(ImportError),
    Refused {
        v: Box<Validated>,
        problems: Problems,
    },
}

impl From<StoreError> for PassError {
    fn from(e: StoreError) -> Self {
        PassError::Import(e.into())
    }
}

impl From<ImportError> for PassError {
    fn from(e: ImportError) -> Self {
        PassError::Import(e)
    }
}

/// A full load into a tenant without history, validating and writing in
/// one pass and one transaction (see [`import`]).
async fn single_pass(
    registry: &Registry,
    tenant: &MunicipalityCode,
    inputs: &Inputs,
    digest: &InputDigest,
    opts: &ImportOptions,
    actor: &Actor,
) -> Result<Pass, ImportError> {
    let (t, eras, inputs, digest, opts, actor) = (
        tenant.clone(),
        registry.eras().clone(),
        inputs.clone(),
        digest.clone(),
        opts.clone(),
        actor.clone(),
    );
    let now = registry.clock().now().timestamp_micros();
    let started = Instant::now();
    let done = registry
        .store()
        .write(Some(tenant), move |tx| {
            if !records::lock_tenant(tx, &t)? {
                return Err(ImportError::from(ServiceError::TenantNotFound(t.to_string())).into());
            }
            if tx
                .query_opt(
                    "SELECT 1 FROM imports WHERE tenant = $1 AND digest = $2",
                    &[t.as_str().into(), digest.identity.as_str().into()],
                )?
                .is_some()
            {
                return Ok(Pass::AlreadyImported);
            }
            if records::tenant_has_history(tx, &t)? {
                return Ok(Pass::NotEmpty);
            }
            let (v, written) = validate_and_load(tx, &t, &inputs, &digest.residents, &eras, &opts)?;
            // Support measures and certificates in the same transaction.
            let side = super::side::load(tx, &t, &v.measures, &v.certificates)?;
            if written == 0 && side == (0, 0) {
                // No rows at all: nothing recorded.
                return Ok(Pass::Unchanged { v });
            }
            finish_load(tx, &t, &digest.identity, &v, now, &actor, written, 0)?;
            tracing::debug!(
                seconds = started.elapsed().as_secs_f64(),
                "import: to commit"
            );
            Ok(Pass::Loaded { v, written })
        })
        .await;
    tracing::debug!(
        seconds = started.elapsed().as_secs_f64(),
        "import: committed"
    );
    match done {
        Ok(pass) => Ok(pass),
        Err(PassError::Refused { v, problems }) => Ok(Pass::Refused { v: *v, problems }),
        Err(PassError::Import(ImportError::Conflict(p))) => Ok(Pass::Refused {
            v: Validated::default(),
            problems: Problems {
                list: vec![*p],
                count: 1,
                max: 1,
            },
        }),
        Err(PassError::Import(e)) => Err(e),
    }
}

/// Rows per batch handed from the reading thread to the writing one.
const BATCH_ROWS: usize = 2048;
/// Batches waiting to be written, at most (bounds memory).
const BATCHES_QUEUED: usize = 4;

/// A batch of encoded rows: history rows, and the projection's rows of the
/// persons whose history ended in it.
struct Batch {
    history: BulkRows,
    current: BulkRows,
}

impl Batch {
    fn new() -> Self {
        Batch {
            history: BulkRows::new(records::HISTORY_WIDTH),
            current: BulkRows::new(records::CURRENT_FROM_HISTORY.len()),
        }
    }
}

/// The reading side of a full load: encodes each valid row into batches for
/// the writing thread.
struct LoadSink<'k> {
    encoder: HistoryEncoder<'k>,
    batch: Batch,
    to_writer: Option<mpsc::SyncSender<Batch>>,
    spent: mpsc::Receiver<Batch>,
    /// The projection row of the person being read (their latest row so far).
    pending: BulkRows,
    person: String,
    written: u64,
    /// A row that contradicts the tenant (its history does not start at 1).
    conflict: Option<Problem>,
    error: Option<StoreError>,
}

impl LoadSink<'_> {
    fn send(&mut self) -> bool {
        let fresh = self.spent.try_recv().unwrap_or_else(|_| Batch::new());
        let full = std::mem::replace(&mut self.batch, fresh);
        match &self.to_writer {
            Some(w) => w.send(full).is_ok(),
            None => false,
        }
    }

    /// Sends what is left, the last person's projection row included.
    fn finish(&mut self) -> bool {
        if self.pending.rows() > 0 {
            self.batch.current.push_row_of(&self.pending, 0);
            self.pending.clear();
        }
        let ok = self.send();
        self.to_writer = None;
        ok
    }
}

impl RowSink for LoadSink<'_> {
    fn row(&mut self, line: u64, row: &HistoryRow) -> Flow {
        let a = row.record.addressee_number.as_str();
        if self.person != a {
            if row.history_number != 1 {
                self.conflict = Some(Problem {
                    file: RESIDENTS_FILE.into(),
                    row: line,
                    column: "history_number".into(),
                    code: "history_gap".into(),
                    message_ja: format!(
                        "宛名番号 {a} は未登録のため、履歴番号 1 から始めてください。何も取り込んでいません。"
                    ),
                    message_en: format!(
                        "{a} is not in the tenant: its history starts at 1; nothing was imported"
                    ),
                });
                self.stop();
                return Flow::StopWriting;
            }
            if self.pending.rows() > 0 {
                self.batch.current.push_row_of(&self.pending, 0);
            }
            self.person.clear();
            self.person.push_str(a);
        }
        if let Err(e) = self.encoder.push(row, &mut self.batch.history) {
            self.error = Some(e);
            self.stop();
            return Flow::Abort;
        }
        self.pending.clear();
        let last = self.batch.history.rows() - 1;
        self.pending
            .push_columns_of(&self.batch.history, last, &records::CURRENT_FROM_HISTORY);
        self.written += 1;
        if self.batch.history.rows() >= BATCH_ROWS && !self.send() {
            return Flow::Abort;
        }
        Flow::Continue
    }

    fn stop(&mut self) {
        self.to_writer = None;
    }
}

/// The first of `unresolved` (line, cancelled change) whose change is not
/// in the tenant either.
fn missing_cancel(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    unresolved: &[(u64, i64)],
) -> Result<Option<(u64, i64)>, StoreError> {
    let ids: Vec<i64> = unresolved.iter().map(|(_, t)| *t).collect();
    let found = records::existing_change_ids(tx, tenant, &ids)?;
    Ok(unresolved.iter().find(|(_, t)| !found.contains(t)).copied())
}

/// For `--validate-only`: the first person a side row names who is neither
/// in residents.csv nor in the tenant (what the load would refuse).
async fn unknown_side_person(
    registry: &Registry,
    tenant: &MunicipalityCode,
    v: &Validated,
) -> Result<Option<Problem>, ImportError> {
    let (t, measures, certificates, in_file) = (
        tenant.clone(),
        v.measures.clone(),
        v.certificates.clone(),
        v.file_persons.clone(),
    );
    Ok(registry
        .store()
        .read(Some(tenant), move |tx| {
            super::side::first_unknown_person(tx, &t, &measures, &certificates, |a| {
                NumberKey::of(a.as_str()).is_some_and(|k| in_file.binary_search(&k).is_ok())
            })
        })
        .await?)
}

/// The problem of a 取消対象異動番号 that names no change.
fn cancels_nothing(line: u64, target: i64) -> Problem {
    Problem {
        file: RESIDENTS_FILE.into(),
        row: line,
        column: "cancels".into(),
        code: "cancels_unknown_change".into(),
        message_ja: format!(
            "取消対象の異動番号 {target} の異動は、このファイルにもこの団体にもありません。"
        ),
        message_en: format!(
            "change {target}, cancelled here, is neither in the file nor in the tenant"
        ),
    }
}

/// Reads, validates and writes every row (the reading on a thread of its
/// own, the writing on this one, which holds the transaction). Errs with
/// the problems if there is any, so that the transaction is rolled back.
fn validate_and_load(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    inputs: &Inputs,
    digest: &(String, u64),
    eras: &EraTable,
    opts: &ImportOptions,
) -> Result<(Validated, u64), PassError> {
    let keys = tx.tenant_keys(tenant)?;
    // About how many rows: a history row takes a few hundred bytes.
    let size = inputs
        .residents
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    let load = BulkLoad::begin(tx, tenant, size / 256)?;
    let read: SharedDigest = Arc::default();
    let (to_writer, batches) = mpsc::sync_channel::<Batch>(BATCHES_QUEUED);
    let (to_reader, spent) = mpsc::channel::<Batch>();
    let mut problems = Problems::new(opts.max_reported);
    let (outcome, write_error) = std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("machi-import-read".into())
            .spawn_scoped(scope, || {
                let mut sink = LoadSink {
                    encoder: HistoryEncoder::new(&keys),
                    batch: Batch::new(),
                    to_writer: Some(to_writer),
                    spent,
                    pending: BulkRows::new(records::CURRENT_FROM_HISTORY.len()),
                    person: String::new(),
                    written: 0,
                    conflict: None,
                    error: None,
                };
                let v = validate(
                    inputs,
                    eras,
                    opts,
                    Phase::Load,
                    &mut problems,
                    &mut sink,
                    Some(&read),
                );
                let complete = problems.count == 0
                    && sink.conflict.is_none()
                    && sink.error.is_none()
                    && sink.finish();
                (v, sink.written, sink.conflict, sink.error, complete)
            });
        let reader = match reader {
            Ok(r) => r,
            Err(e) => return (Err(e.to_string()), None),
        };
        let mut write_error = None;
        let (started, mut writing) = (Instant::now(), std::time::Duration::ZERO);
        for batch in batches.iter() {
            let t = Instant::now();
            let written = load.write(tx, &batch.history, &batch.current);
            writing += t.elapsed();
            if let Err(e) = written {
                write_error = Some(e);
                break;
            }
            let mut batch = batch;
            batch.history.clear();
            batch.current.clear();
            let _ = to_reader.send(batch);
        }
        // A failed write stops the reader (its next send fails).
        drop(batches);
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            writing = writing.as_secs_f64(),
            "import: rows read and written"
        );
        let joined = reader
            .join()
            .map_err(|_| "the import's reading thread panicked".to_string());
        (joined, write_error)
    });
    let (v, written, conflict, error, complete) = outcome.map_err(StoreError::Task)?;
    if let Some(e) = write_error.or(error) {
        return Err(e.into());
    }
    if problems.count > 0 {
        return Err(PassError::Refused {
            v: Box::new(v),
            problems,
        });
    }
    if let Some(p) = conflict {
        return Err(ImportError::Conflict(Box::new(p)).into());
    }
    // The tenant had no history: a cancelled change must be in the file.
    if !v.unresolved_cancels.is_empty() {
        let mut problems = Problems::new(opts.max_reported);
        for (line, target) in &v.unresolved_cancels {
            problems.add(cancels_nothing(*line, *target));
        }
        return Err(PassError::Refused {
            v: Box::new(v),
            problems,
        });
    }
    if !complete {
        return Err(StoreError::Task("the import's rows were not all written".into()).into());
    }
    // The bytes loaded are the bytes digested before (and checked against
    // the imports already recorded).
    if read_digest(&read).as_ref() != Some(digest) {
        return Err(ImportError::Conflict(Box::new(file_changed(RESIDENTS_FILE))).into());
    }
    let t = Instant::now();
    load.finish(tx)?;
    tracing::debug!(seconds = t.elapsed().as_secs_f64(), "import: load finished");
    Ok((v, written))
}

enum Load {
    AlreadyImported,
    /// Everything is stored already; nothing was written.
    Unchanged {
        present: u64,
    },
    Done {
        written: u64,
        present: u64,
    },
    /// A row that contradicts the tenant's data: the transaction is rolled back.
    Conflict(Problem),
}

/// Pass 2, inside one write transaction.
#[allow(clippy::too_many_arguments)]
fn load(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    path: &Path,
    encoding: InputEncoding,
    eras: &EraTable,
    digest: &InputDigest,
    v: &Validated,
    progress: &Option<Progress>,
) -> Result<Load, ImportError> {
    let fail = |e: String| ImportError::from(StoreError::Task(e));
    let mut ticker = Ticker::new(progress, Phase::Load, path);
    if !records::lock_tenant(tx, tenant)? {
        return Err(ServiceError::TenantNotFound(tenant.to_string()).into());
    }
    if tx
        .query_opt(
            "SELECT 1 FROM imports WHERE tenant = $1 AND digest = $2",
            &[tenant.as_str().into(), digest.identity.as_str().into()],
        )?
        .is_some()
    {
        return Ok(Load::AlreadyImported);
    }
    // Change ids grow in the order changes are recorded (cancellation and
    // difference extracts rely on it): new rows must come after the tenant's.
    let change_seq = tx
        .query_one(
            "SELECT change_seq FROM tenant_heads WHERE tenant = $1",
            &[tenant.as_str().into()],
        )?
        .int(0)?;
    // Hashed as it is read: the rows loaded must be the bytes validated.
    let read: SharedDigest = Arc::default();
    let (text, _) = open_text(path, encoding, Some(&read)).map_err(|e| fail(e.to_string()))?;
    let mut reader = csv_reader(text);
    let flagged = has_support_flag(&mut reader);
    reader.headers().map_err(|e| fail(e.to_string()))?;
    let mut record = csv::StringRecord::new();
    let (mut written, mut present) = (0u64, 0u64);
    // 履歴番号 already stored for the person being read (difference loads).
    let mut stored: Option<(String, i64)> = None;
    loop {
        let line = reader.position().line();
        if !reader
            .read_record(&mut record)
            .map_err(|e| fail(e.to_string()))?
        {
            break;
        }
        let mut fields: Vec<&str> = record.iter().collect();
        if flagged && fields.len() == RESIDENT_COLUMNS.len() + 1 {
            fields.pop();
        }
        let row = layout::parse_resident(&fields, eras)
            .map_err(|_| fail(format!("row {line} changed since validation")))?;
        ticker.tick(reader.position().byte());
        let a = row.record.addressee_number.to_string();
        if stored.as_ref().is_none_or(|(sa, _)| *sa != a) {
            let max = tx
                .query_one(
                    "SELECT COALESCE(MAX(history_number), 0) FROM resident_history WHERE tenant = $1 AND addressee_number = $2",
                    &[tenant.as_str().into(), a.as_str().into()],
                )?
                .int(0)?;
            stored = Some((a.clone(), max));
        }
        let max = stored.as_ref().map_or(0, |s| s.1);
        if row.history_number <= max {
            let same = records::history(tx, tenant, &row.record.addressee_number)?
                .into_iter()
                .find(|h| h.history_number == row.history_number)
                .is_some_and(|h| layout::resident_fields(&h) == layout::resident_fields(&row));
            if !same {
                return Err(ImportError::Conflict(Box::new(Problem {
                    file: RESIDENTS_FILE.into(),
                    row: line,
                    column: "history_number".into(),
                    code: "conflicts_with_stored".into(),
                    message_ja: format!(
                        "宛名番号 {a} の履歴番号 {} は登録済みの内容と異なります。何も取り込んでいません。",
                        row.history_number
                    ),
                    message_en: format!(
                        "{a} history {} differs from the stored row; nothing was imported",
                        row.history_number
                    ),
                })));
            }
            present += 1;
            continue;
        }
        if row.history_number != max + 1 {
            return Err(ImportError::Conflict(Box::new(Problem {
                file: RESIDENTS_FILE.into(),
                row: line,
                column: "history_number".into(),
                code: "history_gap".into(),
                message_ja: format!(
                    "宛名番号 {a} の履歴番号は {} から続けてください（この行 {}）。何も取り込んでいません。",
                    max + 1,
                    row.history_number
                ),
                message_en: format!(
                    "{a} must continue at history {} (this row {}); nothing was imported",
                    max + 1,
                    row.history_number
                ),
            })));
        }
        if row.change.change_id <= change_seq {
            return Err(ImportError::Conflict(Box::new(Problem {
                file: RESIDENTS_FILE.into(),
                row: line,
                column: "change_id".into(),
                code: "change_id_not_after_tenant".into(),
                message_ja: format!(
                    "異動番号 {} は、この団体で記録済みの異動（{change_seq} まで）より後でなければなりません。何も取り込んでいません。",
                    row.change.change_id
                ),
                message_en: format!(
                    "change id {} must come after the tenant's recorded changes (up to {change_seq}); nothing was imported",
                    row.change.change_id
                ),
            })));
        }
        stored = Some((a, row.history_number));
        records::append_history(tx, tenant, &row)?;
        written += 1;
    }
    ticker.done();
    if read_digest(&read).as_ref() != Some(&digest.residents) {
        return Err(ImportError::Conflict(Box::new(file_changed(
            RESIDENTS_FILE,
        ))));
    }
    if let Some((line, target)) = missing_cancel(tx, tenant, &v.unresolved_cancels)? {
        return Err(ImportError::Conflict(Box::new(cancels_nothing(
            line, target,
        ))));
    }
    Ok(Load::Done { written, present })
}

fn file_changed(file: &str) -> Problem {
    Problem {
        file: file.into(),
        row: 0,
        column: String::new(),
        code: "file_changed".into(),
        message_ja: "取込み中にファイルが変更されました。何も取り込んでいません。".into(),
        message_en: "the file changed while it was imported; nothing was imported".into(),
    }
}

/// Moves the tenant's sequences past the imported numbers, records the
/// import, and writes its audit entry and linkage event.
#[allow(clippy::too_many_arguments)]
fn finish_load(
    tx: &mut Tx<'_>,
    tenant: &MunicipalityCode,
    digest: &str,
    v: &Validated,
    now: i64,
    actor: &Actor,
    written: u64,
    present: u64,
) -> Result<Load, ImportError> {
    // New numbers, change ids and events continue after the imported ones.
    tx.execute(
        "UPDATE tenant_heads SET \
         change_seq = CASE WHEN change_seq < $2 THEN $2 ELSE change_seq END, \
         addressee_seq = CASE WHEN addressee_seq < $3 THEN $3 ELSE addressee_seq END, \
         household_seq = CASE WHEN household_seq < $4 THEN $4 ELSE household_seq END \
         WHERE tenant = $1",
        &[
            tenant.as_str().into(),
            v.max_change_id.into(),
            v.max_addressee_serial.into(),
            v.max_household_serial.into(),
        ],
    )?;
    tx.execute(
        "INSERT INTO imports (tenant, digest, imported_at, history_rows, operator) VALUES ($1, $2, $3, $4, $5)",
        &[
            tenant.as_str().into(),
            digest.into(),
            now.into(),
            Param::Int(written as i64),
            (&actor.operator).into(),
        ],
    )?;
    let heads = records::advance(
        tx,
        tenant,
        records::Advance {
            event: 1,
            audit: 1,
            ..Default::default()
        },
    )?;
    let detail = serde_json::json!({"digest": digest, "rows_written": written, "rows_already_present": present});
    let prev = heads.audit_hash.clone();
    records::append_audit(
        tx,
        tenant,
        heads.audit,
        &prev,
        now,
        &records::AuditEntry {
            operator: actor.operator.clone(),
            terminal: actor.terminal.clone(),
            function: "import".into(),
            target: RESIDENTS_FILE.into(),
            detail: detail.to_string(),
            my_number_shown: false,
        },
    )?;
    records::append_event(
        tx,
        tenant,
        heads.event,
        crate::service::events::IMPORT_COMPLETED,
        None,
        &detail,
        now,
    )?;
    Ok(Load::Done { written, present })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(columns: &[(&str, &str)]) -> String {
        columns
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(",")
            + "\n"
    }

    /// A side file that is not the one first read (its digest differs from
    /// the one the input was identified by) is refused, not loaded under
    /// the other's identity.
    #[test]
    fn a_side_file_changed_after_the_first_reading_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let residents = dir.path().join(RESIDENTS_FILE);
        let certificates = dir.path().join(CERTIFICATES_FILE);
        std::fs::write(&residents, header(RESIDENT_COLUMNS)).unwrap();
        std::fs::write(&certificates, header(CERTIFICATE_COLUMNS)).unwrap();
        let mut problems = Problems::new(10);
        let mut inputs = find_inputs(&[dir.path().to_path_buf()], &mut problems);
        scan_inputs(&mut inputs, InputEncoding::Auto, &mut problems).unwrap();
        let eras = EraTable::standard();
        let opts = ImportOptions::default();
        let check = |inputs: &Inputs| {
            let mut problems = Problems::new(10);
            validate(
                inputs,
                &eras,
                &opts,
                Phase::Validate,
                &mut problems,
                &mut NoSink,
                None,
            );
            problems.list
        };
        assert!(check(&inputs).is_empty());
        // Edited after the scan.
        std::fs::write(&certificates, header(CERTIFICATE_COLUMNS) + "\n").unwrap();
        let found = check(&inputs);
        assert_eq!(
            found
                .iter()
                .map(|p| (p.file.as_str(), p.code.as_str()))
                .collect::<Vec<_>>(),
            [(CERTIFICATES_FILE, "file_changed")]
        );
    }
}
