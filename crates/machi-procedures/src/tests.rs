use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 6).unwrap()
}

fn shipped(name: &str) -> Definition {
    let (_, src) = SHIPPED.iter().find(|(n, _)| *n == name).unwrap();
    Definition::parse(src).unwrap_or_else(|r| panic!("{name}: {}", r.message_en()))
}

#[test]
fn the_five_shipped_procedures_validate() {
    for (name, src) in SHIPPED {
        let d = Definition::parse(src).unwrap_or_else(|r| panic!("{name}:\n{}", r.message_ja()));
        // 転出届 is at version 2 (its 来庁予定日 counted from the moving
        // date); version 1 stays known as superseded.
        let expected = if d.id() == "tenshutsu" { 2 } else { 1 };
        assert_eq!(d.version(), expected, "{name}");
        assert!(!d.pages.is_empty());
    }
    for (name, src) in SUPERSEDED {
        let d = Definition::parse(src).unwrap_or_else(|r| panic!("{name}:\n{}", r.message_ja()));
        let current = SHIPPED
            .iter()
            .filter_map(|(_, s)| Definition::parse(s).ok())
            .find(|c| c.id() == d.id())
            .unwrap_or_else(|| panic!("{name}: superseded by nothing shipped"));
        assert!(d.version() < current.version(), "{name}");
    }
    assert_eq!(shipped("tenshutsu.toml").identity(), Identity::Signature);
    assert_eq!(
        shipped("tenshutsu.toml").action_kind(),
        ActionKind::RegistryChange
    );
    assert_eq!(
        shipped("juminhyo.toml").action_kind(),
        ActionKind::Certificate
    );
    assert_eq!(shipped("gakudo.toml").action_kind(), ActionKind::Handoff);
    assert_eq!(
        shipped("survey_internet.toml").action_kind(),
        ActionKind::Survey
    );
}

#[test]
fn a_syntax_error_names_its_line_in_both_languages() {
    let src = "[procedure]\nid = \"x\"\nversion = 1\ntitle = { ja = \"x\" }\nidentity = \"none\"\nretention_days = 30\nbogus = 1\n";
    let r = Definition::parse(src).unwrap_err();
    assert_eq!(r.issues.len(), 1);
    assert_eq!(r.issues[0].line, Some(7), "{r:?}");
    assert!(r.message_ja().starts_with("7行目"), "{}", r.message_ja());
    assert!(r.message_en().contains("bogus"), "{}", r.message_en());
}

#[test]
fn semantic_errors_are_all_reported_with_line_and_place() {
    let src = shipped_src("tenshutsu.toml")
        .replace("kind = \"kana\"", "kind = \"katakana\"")
        .replace("not_before_days = -10", "not_before_days = 40")
        .replace("identity = \"signature\"", "identity = \"password\"")
        .replace(
            "moving_date = \"moving_date\", ",
            "moving_date = \"nowhere\", ",
        );
    let r = Definition::parse(&src).unwrap_err();
    let en = r.message_en();
    assert!(en.contains("identity must be none or signature"), "{en}");
    assert!(en.contains("no field kind \"katakana\""), "{en}");
    assert!(
        en.contains("not_before_days is after not_after_days"),
        "{en}"
    );
    assert!(
        en.contains("mapping moving_date: there is no field \"nowhere\""),
        "{en}"
    );
    assert!(r.issues.iter().all(|i| i.line.is_some()), "{r:?}");
    let line_of_identity = src.lines().position(|l| l.starts_with("identity")).unwrap() + 1;
    assert!(r.issues.iter().any(|i| i.line == Some(line_of_identity)));
}

#[test]
fn a_condition_must_look_back_at_a_choice_with_that_value() {
    let src = shipped_src("juminhyo.toml").replace(
        "show_if = { field = \"purpose\", equals = \"other\" }",
        "show_if = { field = \"purpose\", equals = \"holiday\" }",
    );
    let r = Definition::parse(&src).unwrap_err();
    assert!(
        r.message_en().contains("\"holiday\" is not an option"),
        "{}",
        r.message_en()
    );
    let src = shipped_src("juminhyo.toml").replace(
        "show_if = { field = \"purpose\", equals = \"other\" }",
        "show_if = { field = \"id_document\", equals = \"x\" }",
    );
    let r = Definition::parse(&src).unwrap_err();
    assert!(
        r.message_en().contains("not asked before this"),
        "{}",
        r.message_en()
    );
}

#[test]
fn attachment_types_and_sizes_are_bounded_on_publish() {
    let src = shipped_src("juminhyo.toml")
        .replace("max_bytes = 5242880", "max_bytes = 52428800")
        .replace("\"image/png\", \"application/pdf\"]", "\"image/gif\"]");
    let r = Definition::parse(&src).unwrap_err();
    let en = r.message_en();
    assert!(en.contains("max_bytes must be from 1"), "{en}");
    assert!(en.contains("\"image/gif\" is not supported"), "{en}");
}

fn shipped_src(name: &str) -> String {
    SHIPPED
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap()
        .1
        .to_owned()
}

fn answers(pairs: &[(&str, &str)]) -> Answers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn move_out_date_window_is_thirty_days_before_to_ten_after() {
    let d = shipped("tenshutsu.toml");
    let ctx = CheckContext::new(today());
    let page = d.page("moving").unwrap();
    let ok = answers(&[
        ("moving_date.era", "令和"),
        ("moving_date.year", "9"),
        ("moving_date.month", "1"),
        ("moving_date.day", "5"),
    ]);
    assert!(d.check_page(page, &ok, &ctx).is_empty());
    // 2026-11-25 is 11 days ago: too late to file online.
    let late = answers(&[
        ("moving_date.era", "seireki"),
        ("moving_date.year", "2026"),
        ("moving_date.month", "11"),
        ("moving_date.day", "25"),
    ]);
    let e = d.check_page(page, &late, &ctx);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].input, "moving_date.year");
    assert!(
        e[0].message
            .ja
            .contains("令和8年11月26日から令和9年1月5日まで"),
        "{}",
        e[0].message.ja
    );
    assert!(
        e[0].message.get(Lang::En).contains("26 November 2026"),
        "{:?}",
        e[0].message
    );
    let e = d.check_page(
        page,
        &answers(&[
            ("moving_date.era", "平成"),
            ("moving_date.year", "31"),
            ("moving_date.month", "5"),
            ("moving_date.day", "1"),
        ]),
        &ctx,
    );
    // A day that never was (平成 ended on 30 April 2019): said in the
    // citizen's words, without the input echoed back.
    assert!(e[0].message.ja.contains("実在する日付"), "{:?}", e);
    assert!(!e[0].message.ja.contains("31"), "{:?}", e);
    assert!(e[0].message.get(Lang::En).is_ascii(), "{:?}", e);
}

#[test]
fn names_kana_postcodes_and_people_use_the_domain_validators() {
    let d = shipped("tenshutsu.toml");
    let ctx = CheckContext::new(today());
    let a = answers(&[
        ("applicant_name", "架空 太郎"),
        ("applicant_kana", "kakuu taro"),
        ("phone", "042-000-0000"),
        ("destination.postal", "12-345"),
        ("destination.address", "東京都昭島市田中町1-1"),
        ("members.count", "2"),
        ("members.0.name", "架空 太郎"),
        ("members.0.kana", "カクウ タロウ"),
        ("members.0.birth_date.era", "昭和"),
        ("members.0.birth_date.year", "60"),
        ("members.0.birth_date.month", "4"),
        ("members.0.birth_date.day", "1"),
    ]);
    let e = d.check_page(d.page("applicant").unwrap(), &a, &ctx);
    assert_eq!(e.len(), 1);
    assert!(e[0].message.ja.contains("カタカナ"), "{:?}", e[0]);
    assert!(!e[0].message.ja.contains("kakuu"), "no echo: {:?}", e[0]);
    // Hiragana is the citizen's katakana: taken, and filed in katakana.
    let mut h = a.clone();
    h.insert("applicant_kana".into(), "かくう　たろう".into());
    assert!(
        d.check_page(d.page("applicant").unwrap(), &h, &ctx)
            .is_empty()
    );
    d.tidy_kana(d.page("applicant").unwrap(), &mut h);
    assert_eq!(h["applicant_kana"], "カクウ　タロウ");
    let e = d.check_page(d.page("destination").unwrap(), &a, &ctx);
    assert_eq!(e[0].input, "destination.postal");
    let e = d.check_page(d.page("members").unwrap(), &a, &ctx);
    assert!(e.iter().all(|e| e.input.starts_with("members.1.")), "{e:?}");
    assert!(e[0].message.ja.starts_with("2人目："), "{e:?}");
    assert_eq!(e.len(), 3);
}

#[test]
fn conditions_hide_pages_and_fields_and_the_payload_leaves_them_out() {
    let d = shipped("survey_internet.toml");
    let ctx = CheckContext::new(today());
    let no = answers(&[
        ("age_group", "a70"),
        ("uses_internet", "no"),
        ("devices", "pc"),
        ("want_class", "maybe"),
    ]);
    assert!(!d.visible_pages(&no).iter().any(|p| p.id() == "devices"));
    assert!(
        d.check_all(&no, &ctx).is_empty(),
        "{:?}",
        d.check_all(&no, &ctx)
    );
    let p = d.filing_payload(&no, &ctx);
    assert_eq!(p["uses_internet"], serde_json::json!(false));
    assert!(p.get("devices").is_none());
    let yes = answers(&[
        ("age_group", "a65"),
        ("uses_internet", "yes"),
        ("devices", "pc\nsmartphone"),
        ("want_class", "yes"),
    ]);
    let q = d.filing_payload(&yes, &ctx);
    let t = aggregate(&d, &[p, q]);
    let uses = t.iter().find(|t| t.field == "uses_internet").unwrap();
    assert_eq!(
        uses.counts.iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![1, 1]
    );
    let devices = t.iter().find(|t| t.field == "devices").unwrap();
    assert_eq!(
        devices.counts.iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![1, 0, 1]
    );
}

#[test]
fn attachments_are_checked_by_content_and_size() {
    let d = shipped("juminhyo.toml");
    let ctx = CheckContext::new(today());
    let page = d.page("id_document").unwrap();
    let e = d.check_page(
        page,
        &answers(&[
            ("id_document.name", "a.gif"),
            ("id_document.type", "image/gif"),
            ("id_document.data", "R0lG"),
        ]),
        &ctx,
    );
    assert!(e[0].message.ja.contains("JPEG・PNG・PDF"), "{e:?}");
    let big = "A".repeat(7_000_000);
    let e = d.check_page(
        page,
        &answers(&[
            ("id_document.name", "a.png"),
            ("id_document.type", "image/png"),
            ("id_document.data", &big),
        ]),
        &ctx,
    );
    assert!(e[0].message.ja.contains("5.0MB以下"), "{e:?}");
    assert_eq!(file_type_of(b"%PDF-1.7 ..."), Some("application/pdf"));
    assert_eq!(file_type_of(b"GIF89a"), None);
}

#[test]
fn canonical_json_sorts_keys_at_every_depth() {
    let v: serde_json::Value =
        serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"架空"}}"#).unwrap();
    assert_eq!(
        String::from_utf8(canonical_json(&v)).unwrap(),
        r#"{"a":{"c":"架空","d":[{"y":2,"z":1}]},"b":1}"#
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// No input makes the definition reader panic.
    #[test]
    fn parse_never_panics(s in "\\PC{0,400}") {
        let _ = Definition::parse(&s);
    }
    /// Mutating a shipped definition gives a definition or a report, never a panic.
    #[test]
    fn parse_of_a_damaged_definition_never_panics(cut in 0usize..4000, insert in "\\PC{0,8}") {
        let src = shipped_src("tenshutsu.toml");
        let mut at = cut.min(src.len());
        while !src.is_char_boundary(at) { at -= 1; }
        let damaged = format!("{}{}{}", &src[..at], insert, &src[at..]);
        let _ = Definition::parse(&damaged);
    }
    /// No answer makes checking panic.
    #[test]
    fn checking_never_panics(v in "\\PC{0,40}", w in "\\PC{0,12}") {
        let ctx = CheckContext::new(today());
        for (_, src) in SHIPPED {
            let d = Definition::parse(src).unwrap();
            let mut a = Answers::new();
            for (_, f) in d.fields() {
                for suffix in ["", ".era", ".year", ".month", ".day", ".postal", ".address", ".count", ".0.name", ".0.birth_date.year", ".name", ".type", ".data"] {
                    a.insert(format!("{}{suffix}", f.id()), if suffix.is_empty() { v.clone() } else { w.clone() });
                }
            }
            let _ = d.check_all(&a, &ctx);
            let _ = d.filing_payload(&a, &ctx);
        }
    }
}

fn full_tenshutsu() -> Answers {
    answers(&[
        ("applicant_name", "架空 太郎"),
        ("applicant_kana", "カクウ タロウ"),
        ("phone", "042-000-0000"),
        ("moving_date.era", "令和"),
        ("moving_date.year", "8"),
        ("moving_date.month", "12"),
        ("moving_date.day", "20"),
        ("destination.postal", "196-0001"),
        ("destination.address", "東京都昭島市架空町1-1"),
        ("members.count", "2"),
        ("members.0.name", "架空 太郎"),
        ("members.0.kana", "カクウ タロウ"),
        ("members.0.birth_date.era", "昭和"),
        ("members.0.birth_date.year", "60"),
        ("members.0.birth_date.month", "4"),
        ("members.0.birth_date.day", "1"),
        ("members.1.name", "架空 花子"),
        ("members.1.kana", "カクウ ハナコ"),
        ("members.1.birth_date.era", "seireki"),
        ("members.1.birth_date.year", "1987"),
        ("members.1.birth_date.month", "11"),
        ("members.1.birth_date.day", "3"),
        ("visit_date.era", "令和"),
        ("visit_date.year", "8"),
        ("visit_date.month", "12"),
        ("visit_date.day", "24"),
    ])
}

/// 引越しワンストップ: the citizen comes to the new town's counter within
/// 14 days of moving, so the 来庁予定日 lies from the moving date to 14
/// days after it (and not in the past); checked on the page, and again by
/// the back office on the filed payload.
#[test]
fn the_visit_date_is_counted_from_the_moving_date() {
    let d = shipped("tenshutsu.toml");
    let ctx = CheckContext::new(today());
    let visit = |day: &str| {
        let mut a = full_tenshutsu();
        a.insert("visit_date.era".into(), "seireki".into());
        a.insert("visit_date.year".into(), "2027".into());
        a.insert("visit_date.month".into(), "1".into());
        a.insert("visit_date.day".into(), day.into());
        a
    };
    // Moving on 2026-12-20: 2027-01-03 is the 14th day after it.
    let page = d.page("visit").unwrap();
    assert!(d.check_page(page, &visit("3"), &ctx).is_empty());
    let e = d.check_page(page, &visit("4"), &ctx);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].input, "visit_date.year");
    assert!(
        e[0].message
            .ja
            .contains("引っ越しの日（転出予定日）（令和8年12月20日）"),
        "{e:?}"
    );
    assert!(
        e[0].message
            .ja
            .contains("令和8年12月20日から令和9年1月3日まで"),
        "{e:?}"
    );
    assert!(
        e[0].message
            .get(Lang::En)
            .contains("between 20 December 2026 and 3 January 2027"),
        "{e:?}"
    );
    assert!(
        e[0].message.get(Lang::Easy).contains("から かぞえて"),
        "{e:?}"
    );
    // Before the moving date (though after today).
    let mut before = full_tenshutsu();
    before.insert("visit_date.day".into(), "19".into());
    assert_eq!(d.check_page(page, &before, &ctx).len(), 1);
    // Under version 1 this was accepted (counted from today only).
    let v1 = Definition::parse(SUPERSEDED[0].1).unwrap();
    assert!(
        v1.check_page(v1.page("visit").unwrap(), &before, &ctx)
            .is_empty()
    );
    // The back office's check of the filed payload says the same.
    let payload = d.filing_payload(&visit("3"), &ctx);
    assert_eq!(d.check_filed(&payload, &ctx), Ok(()));
    let mut p = payload.clone();
    p["visit_date"] = "2027-01-04".into();
    let e = d.check_filed(&p, &ctx).unwrap_err();
    assert_eq!(e.field, "visit_date");
    // No moving date: only the moving date's own error, not a second one.
    let mut a = visit("3");
    for k in ["era", "year", "month", "day"] {
        a.remove(&format!("moving_date.{k}"));
    }
    let e = d.check_all(&a, &ctx);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].1.field, "moving_date");
}

#[test]
fn a_date_bounded_by_another_field_is_checked_on_publish() {
    let src = shipped_src("tenshutsu.toml");
    let report = |from: &str, to: &str| {
        Definition::parse(&src.replace(from, to))
            .unwrap_err()
            .message_en()
    };
    let en = report(
        "relative_to = \"moving_date\"",
        "relative_to = \"moving_day\"",
    );
    assert!(
        en.contains("relative_to names \"moving_day\", which is no field asked before this one"),
        "{en}"
    );
    let en = report("relative_to = \"moving_date\"", "relative_to = \"phone\"");
    assert!(
        en.contains("relative_to names \"phone\", which is not a date field"),
        "{en}"
    );
    let en = report(
        "relative_to = \"moving_date\"",
        "relative_to = \"visit_date\"",
    );
    assert!(en.contains("cannot name the field itself"), "{en}");
    let en = report("relative_to = \"moving_date\"\n", "");
    assert!(
        en.contains("need relative_to, the date field they count from"),
        "{en}"
    );
    let en = report(
        "not_after_relative_days = 14",
        "not_after_relative_days = -1",
    );
    assert!(
        en.contains("not_before_relative_days is after not_after_relative_days"),
        "{en}"
    );
    let en = report(
        "not_before_relative_days = 0\nnot_after_relative_days = 14",
        "",
    );
    assert!(
        en.contains("relative_to needs not_before_relative_days"),
        "{en}"
    );
    // On a field that is no date; in the fields asked for each person.
    let en = report(
        "id = \"phone\"\nkind = \"phone\"",
        "id = \"phone\"\nkind = \"phone\"\nrelative_to = \"applicant_name\"\nnot_after_relative_days = 1",
    );
    assert!(en.contains("relative_to is only for date fields"), "{en}");
    let en = report(
        "id = \"birth_date\"\nkind = \"date\"",
        "id = \"birth_date\"\nkind = \"date\"\nrelative_to = \"moving_date\"\nnot_after_relative_days = 1",
    );
    assert!(
        en.contains("relative_to cannot be used in the fields asked for each person"),
        "{en}"
    );
    // A date a condition may hide cannot be the base; one always shown can.
    let with_dates = |cond: &str| {
        shipped_src("survey_internet.toml").replace(
            "[action]",
            &format!(
                "[[page]]\nid = \"dates\"\ntitle = {{ ja = \"日付\" }}\n\n\
                 [[page.field]]\nid = \"first_day\"\nkind = \"date\"\nlabel = {{ ja = \"初日\" }}\n{cond}\n\
                 [[page.field]]\nid = \"second_day\"\nkind = \"date\"\nlabel = {{ ja = \"二日目\" }}\n\
                 relative_to = \"first_day\"\nnot_after_relative_days = 3\n\n[action]"
            ),
        )
    };
    let d = Definition::parse(&with_dates("")).unwrap_or_else(|r| panic!("{}", r.message_en()));
    assert_eq!(
        d.field("second_day")
            .unwrap()
            .relative_label
            .as_ref()
            .map(|t| t.ja.as_str()),
        Some("初日")
    );
    let en = Definition::parse(&with_dates(
        "show_if = { field = \"uses_internet\", equals = \"yes\" }",
    ))
    .unwrap_err()
    .message_en();
    assert!(
        en.contains("relative_to names \"first_day\", which a condition (show_if) may hide"),
        "{en}"
    );
    // The base must be asked before: a later field is refused.
    let later = with_dates("")
        .replace("relative_to = \"first_day\"\n", "")
        .replace(
            "id = \"first_day\"\nkind = \"date\"",
            "id = \"first_day\"\nkind = \"date\"\nrelative_to = \"second_day\"",
        )
        .replace(
            "label = { ja = \"初日\" }",
            "label = { ja = \"初日\" }\nnot_before_relative_days = -3",
        )
        .replace("not_after_relative_days = 3\n", "");
    let en = Definition::parse(&later).unwrap_err().message_en();
    assert!(
        en.contains("relative_to names \"second_day\", which is no field asked before this one"),
        "{en}"
    );
    // Every issue has its line.
    let r =
        Definition::parse(&src.replace("relative_to = \"moving_date\"", "relative_to = \"phone\""))
            .unwrap_err();
    assert!(r.issues.iter().all(|i| i.line.is_some()), "{r:?}");
    let ja = r.message_ja();
    assert!(ja.contains("日付（date）の項目ではありません"), "{ja}");
}

#[test]
fn a_filed_payload_is_checked_again_and_must_be_exactly_what_its_answers_make() {
    let d = shipped("tenshutsu.toml");
    let ctx = CheckContext::new(today());
    let a = full_tenshutsu();
    assert!(
        d.check_all(&a, &ctx).is_empty(),
        "{:?}",
        d.check_all(&a, &ctx)
    );
    let payload = d.filing_payload(&a, &ctx);
    assert_eq!(d.check_filed(&payload, &ctx), Ok(()));
    // The move date moved out of the window (31 days before filing).
    let mut p = payload.clone();
    p["moving_date"] = "2026-11-05".into();
    let e = d.check_filed(&p, &ctx).unwrap_err();
    assert_eq!(e.field, "moving_date");
    assert!(e.message.ja.contains("令和8年11月26日から"), "{e:?}");
    // Counted from the day of filing: the same payload filed on 11-06 is good.
    let earlier = CheckContext::new(NaiveDate::from_ymd_opt(2026, 11, 6).unwrap());
    let mut q = p.clone();
    q["visit_date"] = "2026-11-06".into();
    assert_eq!(d.check_filed(&q, &earlier), Ok(()));
    // A name the domain refuses, a field the procedure does not ask, a
    // value of the wrong shape, a missing required answer.
    let mut p = payload.clone();
    p["members"][1]["kana"] = "kakuu hanako".into();
    let e = d.check_filed(&p, &ctx).unwrap_err();
    assert!(e.message.ja.starts_with("2人目："), "{e:?}");
    // A filing carries フリガナ in katakana: hiragana (which the portal's
    // pages turn into katakana) is not what its answers make, and refused.
    let mut p = payload.clone();
    p["members"][1]["kana"] = "かくう はなこ".into();
    assert!(d.check_filed(&p, &ctx).is_err());
    let mut p = payload.clone();
    p["my_number"] = "123456789012".into();
    let e = d.check_filed(&p, &ctx).unwrap_err();
    assert!(e.message.get(Lang::En).contains("my_number"), "{e:?}");
    let mut p = payload.clone();
    p["moving_date"] = serde_json::json!(20261220);
    assert!(d.check_filed(&p, &ctx).is_err());
    let mut p = payload.clone();
    p.as_object_mut().unwrap().remove("applicant_name");
    let e = d.check_filed(&p, &ctx).unwrap_err();
    assert_eq!(e.field, "applicant_name");
    assert!(d.check_filed(&serde_json::json!([1, 2]), &ctx).is_err());
    // A hidden survey question answered anyway (shown only to users of
    // the internet) is refused although every value is valid.
    let s = shipped("survey_internet.toml");
    let no = answers(&[
        ("age_group", "a70"),
        ("uses_internet", "no"),
        ("want_class", "maybe"),
    ]);
    let mut p = s.filing_payload(&no, &ctx);
    assert_eq!(s.check_filed(&p, &ctx), Ok(()));
    p["devices"] = serde_json::json!(["pc"]);
    assert!(s.check_filed(&p, &ctx).is_err());
}

proptest::proptest! {
    #[test]
    fn checking_a_filed_payload_never_panics(v in "\\PC{0,40}", k in "[a-z_]{1,12}") {
        let d = shipped("tenshutsu.toml");
        let ctx = CheckContext::new(today());
        let mut p = d.filing_payload(&full_tenshutsu(), &ctx);
        p[k.as_str()] = serde_json::Value::String(v.clone());
        p["members"][0]["birth_date"] = serde_json::Value::String(v);
        let _ = d.check_filed(&p, &ctx);
    }
}
