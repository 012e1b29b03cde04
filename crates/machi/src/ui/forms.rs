//! The change forms: one per command of the registry, as flat HTML form
//! fields, and their translation into a [`ChangeRequest`]. Pure: no I/O.
//! The registry's planner validates the values themselves (dates, ids,
//! names) and names the field at fault; this module checks the form's shape.

use machi_domain::change::{
    AddressInput, ChangeCommand, ChangeMeta, ChangeRequest, ForeignInput, HouseholdTarget,
    MemberRelationship, MoveWithinHousehold, NewPerson, RecordPatch,
};
use machi_domain::model::{ResidentKind, Sex};

/// Every change a clerk can enter: form type, label (ja), label (en).
pub const KINDS: [(&str, &str, &str); 16] = [
    ("move_in", "国内転入", "Move in (from another municipality)"),
    ("move_in_from_abroad", "国外転入", "Move in from abroad"),
    ("birth", "出生", "Birth"),
    ("ex_officio_entry", "職権記載", "Ex-officio entry"),
    ("move_within", "転居", "Move within the municipality"),
    ("move_out", "国内転出", "Move out (to another municipality)"),
    ("move_out_abroad", "国外転出", "Move out abroad"),
    ("death", "死亡", "Death"),
    ("household_split", "世帯分離", "Household split"),
    ("household_merge", "世帯合併", "Household merge"),
    ("household_transfer", "世帯変更", "Household transfer"),
    ("head_change", "世帯主変更", "Change of head of household"),
    ("ex_officio_correction", "職権修正", "Ex-officio correction"),
    ("clerical_correction", "誤記修正", "Clerical correction"),
    ("ex_officio_removal", "職権消除", "Ex-officio removal"),
    ("cancel", "異動の取消し", "Cancel a change"),
];

/// How many new persons one form can carry.
pub const PERSON_SLOTS: usize = 4;

/// The fields of a submitted form, in order.
#[derive(Debug, Clone, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// A field's value, trimmed; None if absent or empty.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
    pub fn text(&self, k: &str) -> String {
        self.get(k).unwrap_or("").to_string()
    }
    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect()
    }
    pub fn checked(&self, k: &str) -> bool {
        self.get(k).is_some()
    }
    /// A field's value for re-showing in a form ("" if absent).
    pub fn v(&self, k: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    }
    /// The value of person slot `i`'s field `n` (`p{i}_{n}`).
    pub fn p<I: std::fmt::Display>(&self, i: I, n: &str) -> String {
        self.v(&format!("p{i}_{n}")).to_string()
    }
    /// Whether select option `value` of field `k` is chosen.
    pub fn is(&self, k: &str, value: &str) -> bool {
        self.v(k) == value
    }
    pub fn p_is<I: std::fmt::Display>(&self, i: I, n: &str, value: &str) -> bool {
        self.v(&format!("p{i}_{n}")) == value
    }
}

/// A form that does not have the shape of its change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub field: String,
    pub ja: String,
    pub en: String,
}

fn missing(field: &str, ja: &str, en: &str) -> FormError {
    FormError {
        field: field.into(),
        ja: format!("{ja}を入力してください。"),
        en: format!("enter the {en}"),
    }
}

fn need<'a>(f: &'a FormData, field: &str, ja: &str, en: &str) -> Result<&'a str, FormError> {
    f.get(field).ok_or_else(|| missing(field, ja, en))
}

fn opt(f: &FormData, k: &str) -> Option<String> {
    f.get(k).map(str::to_string)
}

/// Addressee numbers: checked boxes (one field each) or one field with
/// numbers separated by spaces, commas or new lines.
fn persons(f: &FormData, field: &str) -> Result<Vec<String>, FormError> {
    let list: Vec<String> = f
        .all(field)
        .into_iter()
        .flat_map(|v| v.split(|c: char| c.is_whitespace() || c == ',' || c == '、'))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err(missing(
            field,
            "対象者の宛名番号",
            "addressee numbers of the persons",
        ));
    }
    Ok(list)
}

/// Lines of `宛名番号 続柄`, e.g. `000000019 世帯主`.
fn relationships(f: &FormData, field: &str) -> Result<Vec<MemberRelationship>, FormError> {
    let mut out = vec![];
    for (i, line) in f.text(field).lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(2, |c: char| c.is_whitespace() || c == ',' || c == ':');
        let (Some(a), Some(rel)) = (parts.next(), parts.next().map(str::trim)) else {
            return Err(FormError {
                field: field.into(),
                ja: format!("{}行目: 「宛名番号 続柄」の形で入力してください。", i + 1),
                en: format!("line {}: write \"addressee_number relationship\"", i + 1),
            });
        };
        if rel.is_empty() {
            return Err(FormError {
                field: field.into(),
                ja: format!("{}行目: 続柄がありません。", i + 1),
                en: format!("line {}: the relationship is missing", i + 1),
            });
        }
        out.push(MemberRelationship {
            addressee_number: a.to_string(),
            relationship: rel.to_string(),
        });
    }
    if out.is_empty() {
        return Err(missing(
            field,
            "宛名番号と続柄",
            "addressee numbers with relationships",
        ));
    }
    Ok(out)
}

fn address(f: &FormData, prefix: &str) -> Result<AddressInput, FormError> {
    Ok(AddressInput {
        address: need(f, &format!("{prefix}address"), "住所", "address")?.to_string(),
        annex: opt(f, &format!("{prefix}annex")),
        postal_code: opt(f, &format!("{prefix}postal_code")),
    })
}

fn household_target(f: &FormData) -> Result<HouseholdTarget, FormError> {
    match f.get("household_mode") {
        Some("join") => Ok(HouseholdTarget::Join {
            household_number: need(
                f,
                "join_household",
                "加わる世帯の世帯番号",
                "household number to join",
            )?
            .to_string(),
        }),
        _ => Ok(HouseholdTarget::New {
            address: address(f, "")?,
        }),
    }
}

fn new_person(f: &FormData, i: usize) -> Result<Option<NewPerson>, FormError> {
    let k = |n: &str| format!("p{i}_{n}");
    let Some(name) = f.get(&k("name")) else {
        return Ok(None);
    };
    let sex = match f.get(&k("sex")) {
        Some("male") => Sex::Male,
        Some("female") => Sex::Female,
        _ => return Err(missing(&k("sex"), "性別", "sex")),
    };
    let kind = if f.get(&k("kind")) == Some("foreign") {
        ResidentKind::Foreign
    } else {
        ResidentKind::Japanese
    };
    let foreign = if kind == ResidentKind::Foreign {
        Some(ForeignInput {
            alphabet_name: need(
                f,
                &k("alphabet_name"),
                "アルファベット氏名",
                "name in the alphabet",
            )?
            .to_string(),
            alias: None,
            alias_kana: None,
            nationality: need(f, &k("nationality"), "国籍・地域", "nationality")?.to_string(),
            residence_status: need(f, &k("residence_status"), "在留資格", "status of residence")?
                .to_string(),
            period_of_stay: opt(f, &k("period_of_stay")),
            stay_expires_on: opt(f, &k("stay_expires_on")),
            card_number: opt(f, &k("card_number")),
        })
    } else {
        None
    };
    Ok(Some(NewPerson {
        name: name.to_string(),
        name_kana: opt(f, &k("name_kana")),
        birth_date: need(f, &k("birth_date"), "生年月日", "date of birth")?.to_string(),
        sex,
        relationship: need(f, &k("relationship"), "続柄", "relationship")?.to_string(),
        kind,
        domicile: opt(f, &k("domicile")),
        domicile_head: opt(f, &k("domicile_head")),
        my_number: opt(f, &k("my_number")),
        resident_code: opt(f, &k("resident_code")),
        resident_since: None,
        foreign,
    }))
}

fn new_persons(f: &FormData) -> Result<Vec<NewPerson>, FormError> {
    let mut out = vec![];
    for i in 0..PERSON_SLOTS {
        if let Some(p) = new_person(f, i)? {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(missing("p0_name", "異動者の氏名", "name of the person"));
    }
    Ok(out)
}

fn patch(f: &FormData) -> Result<RecordPatch, FormError> {
    // A field prefilled with the current value (`cur_patch_*`) and left as
    // it was is no correction.
    let opt = |f: &FormData, k: &str| -> Option<String> {
        let v = f.get(k)?;
        match f.get(&format!("cur_{k}")) {
            Some(cur) if cur == v => None,
            _ => Some(v.to_string()),
        }
    };
    let sex = match opt(f, "patch_sex").as_deref() {
        None => None,
        Some("male") => Some(Sex::Male),
        Some("female") => Some(Sex::Female),
        Some(_) => return Err(missing("patch_sex", "性別", "sex")),
    };
    let p = RecordPatch {
        name: opt(f, "patch_name"),
        name_kana: opt(f, "patch_name_kana"),
        birth_date: opt(f, "patch_birth_date"),
        sex,
        relationship: opt(f, "patch_relationship"),
        domicile: opt(f, "patch_domicile"),
        domicile_head: opt(f, "patch_domicile_head"),
        address_annex: opt(f, "patch_address_annex"),
        postal_code: opt(f, "patch_postal_code"),
        my_number: opt(f, "patch_my_number"),
        resident_code: opt(f, "patch_resident_code"),
        address_since: opt(f, "patch_address_since"),
        resident_since: opt(f, "patch_resident_since"),
    };
    if p == RecordPatch::default() {
        return Err(FormError {
            field: "patch_name".into(),
            ja: "修正する項目を1つ以上入力してください。".into(),
            en: "enter at least one item to correct".into(),
        });
    }
    Ok(p)
}

/// Fields that hold one number (宛名番号, 世帯番号, 異動番号).
const NUMBER_FIELDS: [&str; 7] = [
    "person",
    "household_number",
    "join_household",
    "from_household",
    "into_household",
    "new_head",
    "change_id",
];

/// The form as the clerk meant it (issue 13, item 4): numbers typed in
/// full width or with spaces and hyphens ("０００ ０００ ００１９") read as
/// the number; lists of numbers (one per box, or separated by spaces) and
/// the 「宛名番号 続柄」 lines width-folded, each number compacted.
fn typed(f: &FormData) -> FormData {
    use machi_domain::input::{compact_number, fold_width};
    FormData(
        f.0.iter()
            .map(|(k, v)| {
                let v = if NUMBER_FIELDS.contains(&k.as_str()) {
                    compact_number(v)
                } else if k == "persons" {
                    fold_width(v)
                        .split(|c: char| c.is_whitespace() || c == ',' || c == '、')
                        .filter(|t| !t.is_empty())
                        .map(compact_number)
                        .collect::<Vec<_>>()
                        .join(" ")
                } else if k == "relationships" {
                    fold_width(v)
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

/// The change a submitted form describes, or what is wrong with its shape.
pub fn parse(kind: &str, f: &FormData) -> Result<ChangeRequest, FormError> {
    let f = &typed(f);
    let person = || need(f, "person", "対象者の宛名番号", "addressee number").map(str::to_string);
    let command = match kind {
        "move_in" | "move_in_from_abroad" => {
            let persons = new_persons(f)?;
            let household = household_target(f)?;
            let previous_address =
                need(f, "previous_address", "転入前住所", "previous address")?.to_string();
            if kind == "move_in" {
                ChangeCommand::MoveIn {
                    persons,
                    household,
                    previous_address,
                }
            } else {
                ChangeCommand::MoveInFromAbroad {
                    persons,
                    household,
                    previous_address,
                }
            }
        }
        "birth" => ChangeCommand::Birth {
            person: new_person(f, 0)?
                .ok_or_else(|| missing("p0_name", "子の氏名", "child's name"))?,
            household_number: need(f, "household_number", "世帯番号", "household number")?
                .to_string(),
        },
        "ex_officio_entry" => ChangeCommand::ExOfficioEntry {
            person: new_person(f, 0)?
                .ok_or_else(|| missing("p0_name", "記載する者の氏名", "name of the person"))?,
            household: household_target(f)?,
        },
        "move_within" => {
            let household = match f.get("household_mode") {
                Some("new") => Some(MoveWithinHousehold::New {
                    relationships: relationships(f, "relationships")?,
                }),
                Some("join") => Some(MoveWithinHousehold::Join {
                    household_number: need(
                        f,
                        "join_household",
                        "加わる世帯の世帯番号",
                        "household number to join",
                    )?
                    .to_string(),
                    relationships: relationships(f, "relationships")?,
                }),
                _ => None,
            };
            ChangeCommand::MoveWithin {
                persons: persons(f, "persons")?,
                address: address(f, "")?,
                household,
            }
        }
        "move_out" => ChangeCommand::MoveOut {
            persons: persons(f, "persons")?,
            destination: address(f, "")?,
        },
        "move_out_abroad" => ChangeCommand::MoveOutAbroad {
            persons: persons(f, "persons")?,
            destination: address(f, "")?,
        },
        "death" => ChangeCommand::Death { person: person()? },
        "household_split" => ChangeCommand::HouseholdSplit {
            relationships: relationships(f, "relationships")?,
        },
        "household_merge" => ChangeCommand::HouseholdMerge {
            from_household: need(
                f,
                "from_household",
                "合併する世帯の世帯番号",
                "household that merges",
            )?
            .to_string(),
            into_household: need(
                f,
                "into_household",
                "合併先の世帯番号",
                "household merged into",
            )?
            .to_string(),
            relationships: relationships(f, "relationships")?,
        },
        "household_transfer" => ChangeCommand::HouseholdTransfer {
            into_household: need(
                f,
                "into_household",
                "移る先の世帯番号",
                "household moved into",
            )?
            .to_string(),
            relationships: relationships(f, "relationships")?,
        },
        "head_change" => ChangeCommand::HeadChange {
            household_number: need(f, "household_number", "世帯番号", "household number")?
                .to_string(),
            new_head: need(
                f,
                "new_head",
                "新しい世帯主の宛名番号",
                "new head's addressee number",
            )?
            .to_string(),
            relationships: if f.get("relationships").is_some() {
                relationships(f, "relationships")?
            } else {
                vec![]
            },
        },
        "ex_officio_correction" => ChangeCommand::ExOfficioCorrection {
            person: person()?,
            patch: patch(f)?,
        },
        "clerical_correction" => ChangeCommand::ClericalCorrection {
            person: person()?,
            patch: patch(f)?,
        },
        "ex_officio_removal" => ChangeCommand::ExOfficioRemoval { person: person()? },
        "cancel" => ChangeCommand::Cancel {
            change_id: need(
                f,
                "change_id",
                "取り消す異動の番号",
                "id of the change to cancel",
            )
            .map(machi_domain::input::compact_number)?
            .parse()
            .map_err(|_| FormError {
                field: "change_id".into(),
                ja: "異動番号は数字で入力してください。".into(),
                en: "the change id is a number".into(),
            })?,
        },
        other => {
            return Err(FormError {
                field: "type".into(),
                ja: format!("異動の種類「{other}」はありません。"),
                en: format!("no change type {other:?}"),
            });
        }
    };
    Ok(ChangeRequest {
        meta: ChangeMeta {
            effective_date: need(f, "effective_date", "異動日", "effective date")?.to_string(),
            filed_on: opt(f, "filed_on"),
            input_place: f.text("input_place"),
            input_terminal: f.text("input_terminal"),
            allow_headless_household: f.checked("allow_headless_household"),
        },
        command,
    })
}

/// A change as form fields, the inverse of [`parse`]: to open an entry sent
/// back (差戻し) prefilled. 個人番号 is left out: it is never put on a page.
pub fn to_form(req: &ChangeRequest) -> (String, Vec<(String, String)>) {
    let mut out: Vec<(String, String)> = vec![];
    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            out.push((k.to_string(), v.to_string()));
        }
    };
    let m = &req.meta;
    put("effective_date", &m.effective_date);
    put("filed_on", m.filed_on.as_deref().unwrap_or(""));
    put("input_place", &m.input_place);
    put("input_terminal", &m.input_terminal);
    if m.allow_headless_household {
        put("allow_headless_household", "1");
    }
    fn person(put: &mut dyn FnMut(&str, &str), i: usize, p: &NewPerson) {
        let mut q = |n: &str, v: &str| put(&format!("p{i}_{n}"), v);
        q("name", &p.name);
        q("name_kana", p.name_kana.as_deref().unwrap_or(""));
        q("birth_date", &p.birth_date);
        q(
            "sex",
            match p.sex {
                Sex::Male => "male",
                Sex::Female => "female",
            },
        );
        q("relationship", &p.relationship);
        if p.kind == ResidentKind::Foreign {
            q("kind", "foreign");
        }
        q("domicile", p.domicile.as_deref().unwrap_or(""));
        q("domicile_head", p.domicile_head.as_deref().unwrap_or(""));
        q("resident_code", p.resident_code.as_deref().unwrap_or(""));
        if let Some(fo) = &p.foreign {
            q("alphabet_name", &fo.alphabet_name);
            q("nationality", &fo.nationality);
            q("residence_status", &fo.residence_status);
            q("period_of_stay", fo.period_of_stay.as_deref().unwrap_or(""));
            q(
                "stay_expires_on",
                fo.stay_expires_on.as_deref().unwrap_or(""),
            );
            q("card_number", fo.card_number.as_deref().unwrap_or(""));
        }
    }
    fn addr(put: &mut dyn FnMut(&str, &str), a: &AddressInput) {
        put("address", &a.address);
        put("annex", a.annex.as_deref().unwrap_or(""));
        put("postal_code", a.postal_code.as_deref().unwrap_or(""));
    }
    fn target(put: &mut dyn FnMut(&str, &str), h: &HouseholdTarget) {
        match h {
            HouseholdTarget::New { address } => {
                put("household_mode", "new");
                addr(put, address);
            }
            HouseholdTarget::Join { household_number } => {
                put("household_mode", "join");
                put("join_household", household_number);
            }
        }
    }
    fn rels(put: &mut dyn FnMut(&str, &str), r: &[MemberRelationship]) {
        let lines: Vec<String> = r
            .iter()
            .map(|m| format!("{} {}", m.addressee_number, m.relationship))
            .collect();
        put("relationships", &lines.join("\n"));
    }
    fn patch(put: &mut dyn FnMut(&str, &str), p: &RecordPatch) {
        for (k, v) in [
            ("patch_name", &p.name),
            ("patch_name_kana", &p.name_kana),
            ("patch_birth_date", &p.birth_date),
            ("patch_relationship", &p.relationship),
            ("patch_domicile", &p.domicile),
            ("patch_domicile_head", &p.domicile_head),
            ("patch_address_annex", &p.address_annex),
            ("patch_postal_code", &p.postal_code),
            ("patch_resident_code", &p.resident_code),
            ("patch_address_since", &p.address_since),
            ("patch_resident_since", &p.resident_since),
        ] {
            put(k, v.as_deref().unwrap_or(""));
        }
        match p.sex {
            Some(Sex::Male) => put("patch_sex", "male"),
            Some(Sex::Female) => put("patch_sex", "female"),
            None => {}
        }
    }
    let kind = match &req.command {
        ChangeCommand::MoveIn {
            persons: ps,
            household,
            previous_address,
        }
        | ChangeCommand::MoveInFromAbroad {
            persons: ps,
            household,
            previous_address,
        } => {
            for (i, p) in ps.iter().enumerate().take(PERSON_SLOTS) {
                person(&mut put, i, p);
            }
            target(&mut put, household);
            put("previous_address", previous_address);
            if matches!(req.command, ChangeCommand::MoveIn { .. }) {
                "move_in"
            } else {
                "move_in_from_abroad"
            }
        }
        ChangeCommand::Birth {
            person: p,
            household_number,
        } => {
            person(&mut put, 0, p);
            put("household_number", household_number);
            "birth"
        }
        ChangeCommand::ExOfficioEntry {
            person: p,
            household,
        } => {
            person(&mut put, 0, p);
            target(&mut put, household);
            "ex_officio_entry"
        }
        ChangeCommand::MoveWithin {
            persons: ps,
            address,
            household,
        } => {
            for p in ps {
                put("persons", p);
            }
            addr(&mut put, address);
            match household {
                None => {}
                Some(MoveWithinHousehold::New { relationships }) => {
                    put("household_mode", "new");
                    rels(&mut put, relationships);
                }
                Some(MoveWithinHousehold::Join {
                    household_number,
                    relationships,
                }) => {
                    put("household_mode", "join");
                    put("join_household", household_number);
                    rels(&mut put, relationships);
                }
            }
            "move_within"
        }
        ChangeCommand::MoveOut {
            persons: ps,
            destination,
        }
        | ChangeCommand::MoveOutAbroad {
            persons: ps,
            destination,
        } => {
            for p in ps {
                put("persons", p);
            }
            addr(&mut put, destination);
            if matches!(req.command, ChangeCommand::MoveOut { .. }) {
                "move_out"
            } else {
                "move_out_abroad"
            }
        }
        ChangeCommand::Death { person: p } => {
            put("person", p);
            "death"
        }
        ChangeCommand::ExOfficioRemoval { person: p } => {
            put("person", p);
            "ex_officio_removal"
        }
        ChangeCommand::HouseholdSplit { relationships } => {
            rels(&mut put, relationships);
            "household_split"
        }
        ChangeCommand::HouseholdMerge {
            from_household,
            into_household,
            relationships,
        } => {
            put("from_household", from_household);
            put("into_household", into_household);
            rels(&mut put, relationships);
            "household_merge"
        }
        ChangeCommand::HouseholdTransfer {
            into_household,
            relationships,
        } => {
            put("into_household", into_household);
            rels(&mut put, relationships);
            "household_transfer"
        }
        ChangeCommand::HeadChange {
            household_number,
            new_head,
            relationships,
        } => {
            put("household_number", household_number);
            put("new_head", new_head);
            rels(&mut put, relationships);
            "head_change"
        }
        ChangeCommand::ExOfficioCorrection {
            person: p,
            patch: pa,
        } => {
            put("person", p);
            patch(&mut put, pa);
            "ex_officio_correction"
        }
        ChangeCommand::ClericalCorrection {
            person: p,
            patch: pa,
        } => {
            put("person", p);
            patch(&mut put, pa);
            "clerical_correction"
        }
        ChangeCommand::Cancel { change_id } => {
            put("change_id", &change_id.to_string());
            "cancel"
        }
    };
    (kind.to_string(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> FormData {
        FormData(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_move_in_form_becomes_a_move_in() {
        let f = form(&[
            ("effective_date", "令和6年4月1日"),
            ("p0_name", "架空　一郎"),
            ("p0_name_kana", "カクウ　イチロウ"),
            ("p0_birth_date", "昭和60年1月1日"),
            ("p0_sex", "male"),
            ("p0_relationship", "世帯主"),
            ("p1_name", "架空　花子"),
            ("p1_birth_date", "1990-02-03"),
            ("p1_sex", "female"),
            ("p1_relationship", "妻"),
            ("p2_name", ""),
            ("household_mode", "new"),
            ("address", "東京都府中市宮西町一丁目1番地"),
            ("previous_address", "東京都調布市小島町一丁目1番地"),
        ]);
        let r = parse("move_in", &f).unwrap();
        let ChangeCommand::MoveIn {
            persons, household, ..
        } = r.command
        else {
            panic!("not a move in");
        };
        assert_eq!(persons.len(), 2);
        assert_eq!(persons[1].sex, Sex::Female);
        assert!(matches!(household, HouseholdTarget::New { .. }));
        assert_eq!(r.meta.effective_date, "令和6年4月1日");
    }

    #[test]
    fn every_kind_parses_from_a_filled_form() {
        let f = form(&[
            ("effective_date", "2024-04-01"),
            ("p0_name", "架空　次郎"),
            ("p0_birth_date", "2024-03-01"),
            ("p0_sex", "male"),
            ("p0_relationship", "子"),
            ("household_number", "000000019"),
            ("household_mode", "new"),
            ("address", "東京都府中市宮西町一丁目1番地"),
            ("previous_address", "大韓民国"),
            ("persons", "000000019 000000027"),
            ("person", "000000019"),
            ("relationships", "000000019 世帯主\n000000027 妻"),
            ("from_household", "000000027"),
            ("into_household", "000000019"),
            ("new_head", "000000027"),
            ("patch_name", "架空　次朗"),
            ("change_id", "3"),
        ]);
        for (kind, _, _) in KINDS {
            assert!(parse(kind, &f).is_ok(), "{kind}: {:?}", parse(kind, &f));
        }
    }

    #[test]
    fn numbers_are_read_as_typed() {
        let f = FormData(
            [
                ("effective_date", "令和６年４月１日"),
                ("person", "０００００ ０００１９"),
                ("persons", "００００００００１９　0000-000027"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let ChangeCommand::Death { person } = parse("death", &f).unwrap().command else {
            panic!("a death")
        };
        assert_eq!(person, "0000000019");
        let f2 = FormData(
            [
                ("effective_date", "2024-04-01"),
                ("persons", "００００００００１９　0000-000027"),
                ("address", "大阪府大阪市北区梅田一丁目1番1号"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let ChangeCommand::MoveOut { persons, .. } = parse("move_out", &f2).unwrap().command else {
            panic!("a move-out")
        };
        assert_eq!(persons, vec!["0000000019", "0000000027"]);
    }

    #[test]
    fn every_kind_goes_to_a_form_and_back() {
        let f = form(&[
            ("effective_date", "2024-04-01"),
            ("p0_name", "架空　次郎"),
            ("p0_birth_date", "2024-03-01"),
            ("p0_sex", "male"),
            ("p0_relationship", "子"),
            ("household_number", "0000000019"),
            ("household_mode", "new"),
            ("address", "東京都府中市宮西町一丁目1番地"),
            ("postal_code", "1830022"),
            ("previous_address", "大韓民国"),
            ("persons", "0000000019"),
            ("persons", "0000000027"),
            ("person", "0000000019"),
            ("relationships", "0000000019 世帯主\n0000000027 妻"),
            ("from_household", "0000000027"),
            ("into_household", "0000000019"),
            ("new_head", "0000000027"),
            ("patch_name", "架空　次朗"),
            ("change_id", "3"),
        ]);
        for (kind, _, _) in KINDS {
            let req = parse(kind, &f).unwrap();
            let (k, pairs) = to_form(&req);
            assert_eq!(k, kind);
            let again = parse(&k, &FormData(pairs)).unwrap();
            assert_eq!(again, req, "{kind}");
        }
    }

    #[test]
    fn a_prefilled_correction_keeps_only_what_changed() {
        let f = form(&[
            ("effective_date", "2024-04-01"),
            ("person", "0000000019"),
            ("patch_name", "架空　次朗"),
            ("cur_patch_name", "架空　次郎"),
            ("patch_domicile", "東京都府中市"),
            ("cur_patch_domicile", "東京都府中市"),
        ]);
        let ChangeCommand::ClericalCorrection { patch, .. } =
            parse("clerical_correction", &f).unwrap().command
        else {
            panic!("not a correction");
        };
        assert_eq!(patch.name.as_deref(), Some("架空　次朗"));
        assert_eq!(patch.domicile, None);
    }

    #[test]
    fn shape_errors_name_the_field() {
        let e = parse("death", &form(&[("effective_date", "2024-04-01")])).unwrap_err();
        assert_eq!(e.field, "person");
        let e = parse("move_in", &form(&[("effective_date", "2024-04-01")])).unwrap_err();
        assert_eq!(e.field, "p0_name");
        let e = parse(
            "household_split",
            &form(&[("effective_date", "x"), ("relationships", "000000019")]),
        )
        .unwrap_err();
        assert_eq!(e.field, "relationships");
        let e = parse(
            "cancel",
            &form(&[("effective_date", "x"), ("change_id", "x")]),
        )
        .unwrap_err();
        assert_eq!(e.field, "change_id");
        let e = parse("teleport", &form(&[])).unwrap_err();
        assert_eq!(e.field, "type");
        let e = parse(
            "clerical_correction",
            &form(&[("effective_date", "x"), ("person", "000000019")]),
        )
        .unwrap_err();
        assert_eq!(e.field, "patch_name");
    }
}
