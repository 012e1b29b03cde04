//! PDF rendering of synthetic certificates, checked with poppler's
//! `pdftotext` (Debian package `poppler-utils`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use chrono::NaiveDate;
use machi_domain::certificate::{
    Certificate, CertificateInput, CertificateKind, CertificateOptions, IssueNumber, Issuer,
    PersonSelection, build,
};
use machi_domain::change::{ChangeInfo, ChangeReason, HistoryRow};
use machi_domain::dates::{DatePolicy, DateValue, EraTable};
use machi_domain::ids::{AddresseeNumber, HouseholdNumber};
use machi_domain::model::{
    Address, RegisteredDomicile, ResidentKind, ResidentRecord, ResidentStatus, Sex,
};
use machi_domain::names::PersonName;
use machi_domain::relationship::Relationship;

use super::*;

fn fonts() -> Fonts {
    Fonts::discover().unwrap_or_else(|e| {
        panic!(
            "{}\n{}",
            machi_domain::error::Localized::message_en(&e),
            machi_domain::error::Localized::message_ja(&e)
        )
    })
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn wareki(s: &str) -> DateValue {
    DateValue::parse(s, &EraTable::standard(), DatePolicy::AllowIrregular).unwrap()
}

const GIVEN: [&str; 8] = [
    "花子",
    "一郎",
    "健",
    "さくら",
    "翔太",
    "美咲",
    "大輔",
    "陽菜",
];

/// A synthetic person of household 1; `annex` lets a test make the 方書 long.
fn person(n: u64, rel: &str, annex: &str) -> Vec<HistoryRow> {
    let given = GIVEN[(n as usize - 1) % GIVEN.len()];
    let record = ResidentRecord {
        addressee_number: AddresseeNumber::from_serial(n).unwrap(),
        household_number: HouseholdNumber::from_serial(1).unwrap(),
        kind: ResidentKind::Japanese,
        status: ResidentStatus::Resident,
        name: PersonName::new(format!("髙橋　{given}{n}")).unwrap(),
        name_kana: None,
        birth_date: wareki(&format!("平成{}年4月1日", 1 + n % 30)),
        sex: if n.is_multiple_of(2) {
            Sex::Female
        } else {
            Sex::Male
        },
        relationship: Relationship::parse(rel).unwrap(),
        head_name: Some(PersonName::new("髙橋　花子1").unwrap()),
        registered_domicile: Some(RegisteredDomicile {
            domicile: "東京都府中市寿町一丁目5番地".into(),
            head: "髙橋　花子1".into(),
        }),
        address: Address {
            address: "東京都府中市宮西町二丁目24番地".into(),
            annex: Some(annex.into()),
            postal_code: None,
        },
        address_since: Some(wareki("令和2年4月1日")),
        resident_since: Some(wareki("令和2年4月1日")),
        previous_address: Some("東京都昭島市田中町一丁目1番1号".into()),
        my_number: None,
        resident_code: None,
        foreign: None,
        removal: None,
    };
    let change = |id: i64, reason, date: &str, filed: &str| ChangeInfo {
        change_id: id,
        reason,
        effective_date: wareki(date),
        processed_on: day("2026-11-01"),
        filed_on: Some(day(filed)),
        input_place: "本庁".into(),
        input_terminal: "本庁1".into(),
        recorded_at: id,
        cancels: None,
    };
    let mut rows = vec![HistoryRow {
        history_number: 1,
        record: record.clone(),
        change: change(1, ChangeReason::MoveIn, "令和2年4月1日", "2020-04-03"),
    }];
    // A few 転居 within the town, for the history lines.
    let mut r = record;
    for i in 2..5 {
        r.address.address = format!("東京都府中市宮西町二丁目{}番地", 20 + i);
        rows.push(HistoryRow {
            history_number: i,
            record: r.clone(),
            change: change(
                i,
                ChangeReason::MoveWithin,
                &format!("令和{}年7月1日", i + 1),
                &format!("{}-07-03", 2019 + i),
            ),
        });
    }
    rows
}

fn certificate(persons: &[Vec<HistoryRow>], options: &CertificateOptions) -> Certificate {
    let eras = EraTable::standard();
    let issuer = Issuer {
        title: "東京都府中市長".into(),
        name: "府中　一郎".into(),
        seal_text: None,
        seal_note: Some("この印は黒色です".into()),
    };
    build(&CertificateInput {
        kind: CertificateKind::ResidentCopy,
        persons,
        municipality: "府中市",
        issuer: &issuer,
        issue_date: day("2026-11-22"),
        eras: &eras,
        options,
    })
    .unwrap()
}

fn stamp() -> IssueStamp {
    IssueStamp {
        issue_number: IssueNumber {
            issued_on: day("2026-11-22"),
            municipality: "府中市".into(),
            terminal: "本庁1".into(),
            printer: "プリンタ001".into(),
            sequence: 11,
        }
        .to_string(),
        verification_code: "K7Q2-M9XD".into(),
        verification_url: "https://fuchu.example.lg.jp/verify".into(),
    }
}

fn one_page() -> Certificate {
    let persons = vec![
        person(1, "世帯主", "府中ハイツ101号"),
        person(2, "夫", "府中ハイツ101号"),
    ];
    certificate(
        &persons,
        &CertificateOptions {
            head_and_relationship: true,
            ..Default::default()
        },
    )
}

/// Runs `pdftotext` on `pdf`; `args` go before the file name.
fn pdftotext(pdf: &[u8], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(args)
        .arg(&path)
        .arg("-")
        .output()
        .unwrap_or_else(|e| {
            panic!("pdftotext could not run ({e}); install it with `apt-get install poppler-utils`")
        });
    assert!(
        out.status.success(),
        "pdftotext failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// pdftotext with spaces removed (it inserts some between glyph runs).
fn compact(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn a_one_page_certificate_has_its_text_in_a_subset_font() {
    let fonts = fonts();
    let rendered = render_report(&one_page(), &stamp(), &fonts).unwrap();
    assert_eq!(rendered.pages, 1);
    assert!(
        rendered.missing_chars.is_empty(),
        "{:?}",
        rendered.missing_chars
    );
    assert!(rendered.pdf.starts_with(b"%PDF-"));
    let text = compact(&pdftotext(&rendered.pdf, &[]));
    for expected in [
        "住民票の写し",
        "令和8年11月22日",
        "髙橋花子1",
        "平成2年4月1日",
        "府中ハイツ101号",
        "20261122府中市本庁1プリンタ001011",
        "K7Q2-M9XD",
        "https://fuchu.example.lg.jp/verify",
        "この写しは、世帯全員の住民票の原本と相違ないことを証明する。",
        "東京都府中市長府中一郎",
        "東京都府中市長之印",
        "以下余白",
        "1/1",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    // The embedded font is a subset: a tiny fraction of the font file.
    assert!(
        rendered.pdf.len() * 20 < fonts.main_font_size(),
        "PDF is {} bytes, font file {} bytes",
        rendered.pdf.len(),
        fonts.main_font_size()
    );
    assert_eq!(
        render(&one_page(), &stamp(), &fonts).unwrap().len(),
        rendered.pdf.len()
    );
}

#[test]
fn long_certificates_wrap_continue_and_repeat_the_header() {
    let fonts = fonts();
    // 40 members, each with history, and a 方書 far longer than a line.
    let long_annex = "府中グランドレジデンス宮西町タワー・サウスウイング".repeat(12);
    let mut persons = vec![person(1, "世帯主", &long_annex)];
    for n in 2..=40 {
        persons.push(person(n, "子", &long_annex));
    }
    let cert = certificate(
        &persons,
        &CertificateOptions {
            with_history: true,
            head_and_relationship: true,
            registered_domicile: true,
            ..Default::default()
        },
    );
    let rendered = render_report(&cert, &stamp(), &fonts).unwrap();
    let pages = rendered.pages;
    assert!(pages >= 5, "only {pages} pages");
    let all = pdftotext(&rendered.pdf, &[]);
    assert_eq!(
        all.matches('\u{c}').count(),
        pages,
        "page count as poppler sees it"
    );

    for p in 1..=pages {
        let n = p.to_string();
        let page = compact(&pdftotext(&rendered.pdf, &["-f", &n, "-l", &n]));
        // The header on every page, with its page in the issue number (j1040).
        assert!(page.contains("住民票の写し"), "page {p}");
        assert!(
            page.contains(&format!("011{p}/{pages}")),
            "page {p}: {page}"
        );
        assert!(page.contains(&format!("{p}/{pages}")), "page {p}");
        assert!(page.contains("K7Q2-M9XD"), "page {p}");
        // The 認証文 on the last page only (j1000).
        assert_eq!(
            page.contains("相違ないことを証明する"),
            p == pages,
            "page {p}"
        );
    }
    // Everyone is there, the long 方書 whole.
    let text = compact(&all);
    for n in 1..=40 {
        let given = GIVEN[(n - 1) % GIVEN.len()];
        assert!(text.contains(&format!("髙橋{given}{n}")), "person {n}");
    }
    assert!(text.contains(&compact(&long_annex)));
    assert!(text.contains("令和5年7月1日転居（届出令和5年7月3日）"));
    assert!(
        text.contains("（前頁から続く）"),
        "a block split over pages names its person"
    );

    // Nothing runs off the page or into the margins (j1070).
    let boxes = pdftotext(&rendered.pdf, &["-bbox"]);
    let mut words = 0;
    for line in boxes.lines().filter(|l| l.contains("<word ")) {
        let attr = |name: &str| -> f32 {
            let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            let rest = &line[start..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        };
        assert!(attr("xMin") >= 49.0, "{line}");
        assert!(attr("xMax") <= 595.28 - 49.0, "{line}");
        assert!(attr("yMin") >= 30.0, "{line}");
        assert!(attr("yMax") <= 841.89 - 30.0, "{line}");
        words += 1;
    }
    assert!(words > 100);
}

#[test]
fn a_part_of_the_household_in_a_removed_copy_title() {
    // Not about layout: the title and sentence come from the content.
    let fonts = fonts();
    let persons = vec![
        person(1, "世帯主", "府中ハイツ101号"),
        person(2, "夫", "府中ハイツ101号"),
    ];
    let cert = certificate(
        &persons,
        &CertificateOptions {
            persons: PersonSelection::Persons(vec![AddresseeNumber::from_serial(2).unwrap()]),
            official_use: true,
            ..Default::default()
        },
    );
    let text = compact(&pdftotext(&render(&cert, &stamp(), &fonts).unwrap(), &[]));
    assert!(text.contains("公用"));
    assert!(text.contains("この写しは、住民票の原本と相違ないことを証明する。"));
    assert!(!text.contains("髙橋花子1平成"));
}

#[test]
fn characters_without_a_glyph_are_reported() {
    let fonts = fonts();
    let mut persons = vec![person(1, "世帯主", "府中ハイツ101号")];
    // A private-use character (外字) no installed font has.
    persons[0][3].record.name = PersonName::new("髙橋\u{E000}子").unwrap();
    let cert = certificate(&persons, &CertificateOptions::default());
    let rendered = render_report(&cert, &stamp(), &fonts).unwrap();
    assert_eq!(rendered.missing_chars, vec!['\u{E000}']);
}

#[test]
fn a_bad_font_path_is_a_clear_error() {
    let missing = Path::new("/nonexistent/machi/font.ttf");
    let e = Fonts::discover_with(Some(missing)).unwrap_err();
    assert!(matches!(&e, FontError::Unreadable { path, .. } if path == missing));
    assert!(e.to_string().contains("/nonexistent/machi/font.ttf"));
    assert!(e.to_string().contains(FONT_ENV));

    let not_a_font = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let e = Fonts::discover_with(Some(&not_a_font)).unwrap_err();
    assert_eq!(e, FontError::NotAFont { path: not_a_font });
    assert!(machi_domain::error::Localized::message_ja(&e).contains("フォントではありません"));

    let searched = [
        Path::new("/nonexistent/a.ttf"),
        Path::new("/nonexistent/b.ttf"),
    ];
    let e = Fonts::discover_from(None, &searched).unwrap_err();
    let en = e.to_string();
    let ja = machi_domain::error::Localized::message_ja(&e);
    for msg in [&en, &ja] {
        assert!(msg.contains("/nonexistent/a.ttf") && msg.contains("/nonexistent/b.ttf"));
        assert!(msg.contains("apt-get install fonts-ipaexfont"), "{msg}");
        assert!(msg.contains("MACHI_FONT"));
    }
    assert!(ja.contains("日本語フォントが見つかりません"));
}

#[test]
fn the_font_configured_by_path_is_used() {
    let main = fonts();
    let path = main.paths()[0].to_path_buf();
    let fonts = Fonts::discover_with(Some(&path)).unwrap();
    assert_eq!(fonts.paths()[0], path);
    let only = Fonts::from_file(&path).unwrap();
    assert_eq!(only.paths(), vec![path.as_path()]);
}

#[test]
fn characters_the_main_font_lacks_come_from_the_next_font() {
    // DejaVu Sans (fonts-dejavu-core, which poppler-utils pulls in) has no
    // kanji: they must come from IPAex, the Latin text from DejaVu.
    let dejavu = Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf");
    assert!(
        dejavu.is_file(),
        "{} missing: apt-get install fonts-dejavu-core",
        dejavu.display()
    );
    let ipaex = fonts();
    let fonts = Fonts::from_files(&[dejavu, ipaex.paths()[0]]).unwrap();
    let rendered = render_report(&one_page(), &stamp(), &fonts).unwrap();
    if let Some(dir) = std::env::var_os("MACHI_CERT_SAMPLES") {
        std::fs::write(Path::new(&dir).join("fallback.pdf"), &rendered.pdf).unwrap();
    }
    assert!(
        rendered.missing_chars.is_empty(),
        "{:?}",
        rendered.missing_chars
    );
    let text = compact(&pdftotext(&rendered.pdf, &[]));
    assert!(text.contains("髙橋花子1") && text.contains("https://fuchu.example.lg.jp/verify"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.pdf");
    std::fs::write(&path, &rendered.pdf).unwrap();
    let out = Command::new("pdffonts")
        .arg(&path)
        .output()
        .expect("pdffonts (poppler-utils)");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("DejaVuSans") && listed.contains("IPAexMincho"),
        "{listed}"
    );
    assert!(Fonts::from_files(&[]).is_err());
}

/// Prints the time to render a typical one-page certificate (run with
/// `--nocapture` to see it).
#[test]
fn render_time_of_a_one_page_certificate() {
    let fonts = fonts();
    let cert = one_page();
    let stamp = stamp();
    render(&cert, &stamp, &fonts).unwrap();
    let runs = 10;
    let start = Instant::now();
    let mut size = 0;
    for _ in 0..runs {
        size = render(&cert, &stamp, &fonts).unwrap().len();
    }
    let each = start.elapsed() / runs;
    println!("one-page certificate: {each:?} per render, {size} bytes");
    assert!(each.as_secs() < 5);
}

/// Writes the sample PDFs (a one-page certificate and a 40-person 公用 one)
/// to the directory named by `MACHI_CERT_SAMPLES`, for looking at them, or
/// to a temporary directory, and reads the written files back with poppler:
/// each is a PDF of the expected pages carrying its text.
#[test]
fn sample_certificates_are_written_and_read_back() {
    let temp = tempfile::tempdir().unwrap();
    let dir = match std::env::var_os("MACHI_CERT_SAMPLES") {
        Some(d) => std::path::PathBuf::from(d),
        None => temp.path().to_path_buf(),
    };
    let fonts = fonts();
    let write = |name: &str, pdf: Vec<u8>| -> Vec<u8> {
        let path = dir.join(name);
        std::fs::write(&path, &pdf).unwrap_or_else(|e| {
            panic!(
                "cannot write {} (MACHI_CERT_SAMPLES must name a writable directory): {e}",
                path.display()
            )
        });
        std::fs::read(&path).unwrap()
    };
    let one = write(
        "one-page.pdf",
        render(&one_page(), &stamp(), &fonts).unwrap(),
    );
    let long_annex = "府中グランドレジデンス宮西町タワー・サウスウイング".repeat(12);
    let mut persons = vec![person(1, "世帯主", &long_annex)];
    for n in 2..=40 {
        persons.push(person(n, "子", &long_annex));
    }
    let cert = certificate(
        &persons,
        &CertificateOptions {
            with_history: true,
            head_and_relationship: true,
            registered_domicile: true,
            official_use: true,
            ..Default::default()
        },
    );
    let long = write("long.pdf", render(&cert, &stamp(), &fonts).unwrap());

    let one_text = pdftotext(&one, &[]);
    assert_eq!(one_text.matches('\u{c}').count(), 1, "one page: {one_text}");
    let one_text = compact(&one_text);
    assert!(
        one_text.contains("住民票の写し") && one_text.contains("髙橋花子1"),
        "{one_text}"
    );
    assert!(!one_text.contains("公用"), "{one_text}");
    let long_text = pdftotext(&long, &[]);
    let pages = long_text.matches('\u{c}').count();
    assert!(pages >= 5, "only {pages} pages");
    let long_text = compact(&long_text);
    assert!(long_text.contains("公用"), "the official-use mark");
    for n in 1..=40 {
        let given = GIVEN[(n - 1) % GIVEN.len()];
        assert!(long_text.contains(&format!("髙橋{given}{n}")), "person {n}");
    }
}
