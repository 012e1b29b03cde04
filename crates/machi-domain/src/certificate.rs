//! Certificates (証明書): what a 住民票の写し, 住民票の除票の写し,
//! 住民票記載事項証明書, 住民票除票記載事項証明書 or 転出証明書 says
//! (j1000–j1070, j660, j300; the items come from j10 and j20).
//!
//! [`build`] turns the persons' history rows (j200) into a [`Certificate`]:
//! the title, the items of each person in the standard order, the history
//! lines, the 認証文 with the 和暦 issue date and the issuer. Everything a
//! renderer shows is text here; a renderer only lays it out. Pure: no I/O,
//! no clock (the issue date is passed in).
//!
//! What is deliberately not here: the issue record (j300, the caller stores
//! [`Certificate::issue_record`]), the issue number's sequence (j1040, the
//! caller allocates it, [`IssueNumber`] formats it), support measures
//! (j160/j440: the caller refuses before building), and the seal image
//! (j1050: the seal is text).

pub mod counter;

use std::collections::BTreeSet;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::change::{ChangeReason, HistoryRow, ReasonCategory};
use crate::dates::{DateValue, EraTable};
use crate::error::Localized;
use crate::ids::{AddresseeNumber, HouseholdNumber};
use crate::model::{ResidentKind, ResidentRecord, ResidentStatus};

// ---------------------------------------------------------------------------
// Kinds and options
// ---------------------------------------------------------------------------

/// The certificates of j1000 and j660.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CertificateKind {
    /// 住民票の写し (j1000): residents (including a 転出予定者 before the
    /// planned date, j50), the whole household or some members.
    ResidentCopy,
    /// 住民票記載事項証明書 (j1000): the requested items of residents.
    RecordItemsCertificate,
    /// 住民票の除票の写し (j1000, j50): persons whose record was removed.
    RemovedCopy,
    /// 住民票除票記載事項証明書 (j1000): the requested items of a 除票.
    RemovedRecordItemsCertificate,
    /// 転出証明書 (j660): persons with a recorded domestic 転出.
    MoveOutCertificate,
}

impl CertificateKind {
    pub const ALL: [CertificateKind; 5] = [
        Self::ResidentCopy,
        Self::RecordItemsCertificate,
        Self::RemovedCopy,
        Self::RemovedRecordItemsCertificate,
        Self::MoveOutCertificate,
    ];

    /// The certificate's name, as its title shows it.
    pub fn title_ja(self) -> &'static str {
        match self {
            Self::ResidentCopy => "住民票の写し",
            Self::RecordItemsCertificate => "住民票記載事項証明書",
            Self::RemovedCopy => "住民票の除票の写し",
            Self::RemovedRecordItemsCertificate => "住民票除票記載事項証明書",
            Self::MoveOutCertificate => "転出証明書",
        }
    }

    /// The snake_case code used in the API and the database.
    pub fn code(self) -> &'static str {
        match self {
            Self::ResidentCopy => "resident_copy",
            Self::RecordItemsCertificate => "record_items_certificate",
            Self::RemovedCopy => "removed_copy",
            Self::RemovedRecordItemsCertificate => "removed_record_items_certificate",
            Self::MoveOutCertificate => "move_out_certificate",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Whether the certificate is about removed records (除票).
    fn is_removed(self) -> bool {
        matches!(
            self,
            Self::RemovedCopy | Self::RemovedRecordItemsCertificate
        )
    }

    /// The four certificates j1000's options (form, omissions, 公用) apply to.
    fn is_j1000(self) -> bool {
        self != Self::MoveOutCertificate
    }

    fn is_items_certificate(self) -> bool {
        matches!(
            self,
            Self::RecordItemsCertificate | Self::RemovedRecordItemsCertificate
        )
    }
}

impl fmt::Display for CertificateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title_ja())
    }
}

/// Whom the certificate is about (j1000: 世帯全員分又は一部の世帯員).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", content = "persons", rename_all = "snake_case")]
pub enum PersonSelection {
    /// Every person given whose record fits the kind (for a 住民票の写し:
    /// every current member of the household). Persons given who no longer
    /// belong (e.g. moved out) are left out, not refused.
    #[default]
    WholeHousehold,
    /// These persons, each of whom must fit the kind.
    Persons(Vec<AddresseeNumber>),
}

/// The order of the members on the certificate (j1010).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberOrder {
    /// The standard's order (j1010): 世帯主, 配偶者, 子, then the families
    /// of the children, the head's parents, siblings and grandparents, then
    /// other relatives, 縁故者 and 同居人; by birth date, then 宛名番号,
    /// within each group. See [`standard_order_key`].
    #[default]
    Standard,
    /// The order in which the persons were given (a [`PersonSelection::Persons`]
    /// list, or the order of the histories): the municipality's own setting
    /// (j1010 「任意に設定することもできる」), kept by the caller.
    AsGiven,
}

/// What the applicant asked for (j1000, j1020, j1030, j1060, j660).
///
/// The default is what a 住民票の写し shows without a special request
/// (基礎証明事項): 世帯主・続柄, 本籍・筆頭者, 住民票コード, 個人番号 and the
/// foreign residents' status items are omitted. j1000 lets a municipality
/// choose its own default for each; it keeps one of these as a template.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificateOptions {
    pub persons: PersonSelection,
    pub order: MemberOrder,
    /// 履歴の有無 (j1000): add each person's change history (former
    /// addresses, names, ...). Not for a 転出証明書.
    pub with_history: bool,
    /// 世帯主・続柄 (j1000).
    pub head_and_relationship: bool,
    /// 本籍・筆頭者 (j1000); Japanese residents only.
    pub registered_domicile: bool,
    /// 住民票コード (j1000).
    pub resident_code: bool,
    /// 個人番号 (j1000).
    pub my_number: bool,
    /// Foreign residents (j1000): 国籍・地域, 在留資格, 在留期間,
    /// 在留期間の満了の日, 在留カード等の番号.
    pub foreign_status: bool,
    /// Furigana after 氏名 and 通称, in brackets (j1020).
    pub furigana: bool,
    /// 住民票記載事項証明書 only: the items to certify. `None` = every item
    /// the other options leave in. An item must be listed here *and* not
    /// omitted by the flags above.
    pub record_items: Option<Vec<ItemKind>>,
    /// 住民票記載事項証明書 only: leave the 方書 out of the address, when the
    /// request asks so (j1030). On every other certificate the 方書 is always
    /// printed.
    pub omit_address_annex: bool,
    /// Print 「公用」 (j1060). Not for a 転出証明書.
    pub official_use: bool,
    /// 転出証明書 only: a re-issue (j660), titled 「転出証明書（再交付）」.
    /// The caller passes the rows as they stood at the first issue
    /// ([`crate::change::AsOf::recorded_at`]), as j660 requires.
    pub reissue: bool,
}

/// 市区町村長 or 職務代理者 who certifies (j310, j1050).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuer {
    /// 職名 with the prefecture's name (j1050), e.g. 「東京都府中市長」 or
    /// 「東京都府中市長職務代理者　副市長」.
    pub title: String,
    /// 氏名; may not be blank (j310).
    pub name: String,
    /// The text of the seal box; `None` gives 「{title}之印」.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_text: Option<String>,
    /// A fixed note by the seal, e.g. 「この印は黒色です」 or 「公印省略」 (j1050).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_note: Option<String>,
}

/// Everything [`build`] needs.
#[derive(Debug, Clone, Copy)]
pub struct CertificateInput<'a> {
    pub kind: CertificateKind,
    /// Each person's history rows (j200), in any order; the current row is
    /// the one with the highest 履歴番号. For a 住民票の写し of the whole
    /// household, pass every member's rows.
    pub persons: &'a [Vec<HistoryRow>],
    /// The municipality's name, e.g. 「府中市」.
    pub municipality: &'a str,
    pub issuer: &'a Issuer,
    /// 交付年月日; decides whether a planned 転出 has taken effect.
    pub issue_date: NaiveDate,
    pub eras: &'a EraTable,
    pub options: &'a CertificateOptions,
}

// ---------------------------------------------------------------------------
// The certificate
// ---------------------------------------------------------------------------

/// One item of a record (j10, j20), in the standard order: the order of the
/// variants is the order on the certificate (法第7条's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ItemKind {
    /// 氏名 (foreign residents: アルファベット and 漢字)
    Name,
    /// 通称 (j20, j70)
    Alias,
    /// 生年月日
    BirthDate,
    /// 性別
    Sex,
    /// 世帯主の氏名
    HeadOfHousehold,
    /// 世帯主との続柄
    Relationship,
    /// 本籍
    RegisteredDomicile,
    /// 筆頭者
    FamilyRegisterHead,
    /// 住民となった年月日 (外国人住民となった年月日)
    ResidentSince,
    /// 住所 with 方書 (j1030)
    Address,
    /// 住所を定めた年月日
    AddressSince,
    /// 住所を定めた旨の届出の年月日
    AddressFiledOn,
    /// 転入前住所 (従前の住所)
    PreviousAddress,
    /// 個人番号
    MyNumber,
    /// 住民票コード
    ResidentCode,
    /// 国籍・地域
    Nationality,
    /// 在留資格
    ResidenceStatus,
    /// 在留期間
    PeriodOfStay,
    /// 在留期間の満了の日 (西暦, j90)
    StayExpiresOn,
    /// 在留カード等の番号
    ResidenceCardNumber,
    /// 消除事由 (除票)
    RemovalReason,
    /// 事由の生じた年月日; for a 転出, 転出予定年月日 (除票, 転出証明書)
    RemovalDate,
    /// 転出先住所（予定） (除票, 転出証明書)
    Destination,
}

impl ItemKind {
    /// Items a certificate shows once for all persons when they agree.
    const SHARED: [ItemKind; 3] = [Self::HeadOfHousehold, Self::Address, Self::Destination];

    /// The item by its stored code (`birth_date`).
    pub fn from_code(code: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(code.to_string())).ok()
    }

    /// The item's name as a certificate and a clerk call it.
    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Name => "氏名",
            Self::Alias => "通称",
            Self::BirthDate => "生年月日",
            Self::Sex => "性別",
            Self::HeadOfHousehold => "世帯主の氏名",
            Self::Relationship => "世帯主との続柄",
            Self::RegisteredDomicile => "本籍",
            Self::FamilyRegisterHead => "筆頭者",
            Self::ResidentSince => "住民となった年月日",
            Self::Address => "住所",
            Self::AddressSince => "住所を定めた年月日",
            Self::AddressFiledOn => "住所を定めた旨の届出の年月日",
            Self::PreviousAddress => "従前の住所",
            Self::MyNumber => "個人番号",
            Self::ResidentCode => "住民票コード",
            Self::Nationality => "国籍・地域",
            Self::ResidenceStatus => "在留資格",
            Self::PeriodOfStay => "在留期間",
            Self::StayExpiresOn => "在留期間の満了の日",
            Self::ResidenceCardNumber => "在留カード等の番号",
            Self::RemovalReason => "消除事由",
            Self::RemovalDate => "事由の生じた年月日",
            Self::Destination => "転出先住所",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Alias => "alias",
            Self::BirthDate => "date of birth",
            Self::Sex => "sex",
            Self::HeadOfHousehold => "head of household",
            Self::Relationship => "relationship to the head",
            Self::RegisteredDomicile => "registered domicile",
            Self::FamilyRegisterHead => "head of the family register",
            Self::ResidentSince => "resident since",
            Self::Address => "address",
            Self::AddressSince => "address since",
            Self::AddressFiledOn => "address filed on",
            Self::PreviousAddress => "previous address",
            Self::MyNumber => "individual number",
            Self::ResidentCode => "resident record code",
            Self::Nationality => "nationality or region",
            Self::ResidenceStatus => "status of residence",
            Self::PeriodOfStay => "period of stay",
            Self::StayExpiresOn => "period of stay ends on",
            Self::ResidenceCardNumber => "residence card number",
            Self::RemovalReason => "reason for removal",
            Self::RemovalDate => "date of the event",
            Self::Destination => "destination",
        }
    }
}

/// One labelled item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub kind: ItemKind,
    pub label: String,
    pub value: String,
}

/// One line of a person's history (j1000 履歴).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLine {
    /// 異動日, 和暦.
    pub date: String,
    /// 異動事由 (j210).
    pub reason: String,
    /// 届出日, 和暦.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filed_on: Option<String>,
    /// What the change altered, e.g. 「前住所　東京都府中市…」.
    pub details: Vec<String>,
}

impl HistoryLine {
    /// The line as one string: 「令和3年4月1日　転居（届出　令和3年4月5日）　前住所　…」.
    pub fn text(&self) -> String {
        let mut s = format!("{}　{}", self.date, self.reason);
        if let Some(f) = &self.filed_on {
            s.push_str(&format!("（届出　{f}）"));
        }
        for d in &self.details {
            s.push('　');
            s.push_str(d);
        }
        s
    }
}

/// One person's part of the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonBlock {
    pub addressee_number: AddresseeNumber,
    pub items: Vec<Item>,
    /// Empty unless history was asked for.
    pub history: Vec<HistoryLine>,
}

/// 認証文 with its date and the certifier (j1000, j1050), printed on the last
/// page only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certification {
    /// e.g. 「この写しは、世帯全員の住民票の原本と相違ないことを証明する。」
    pub sentence: String,
    /// 交付年月日, 和暦.
    pub date: String,
    /// 「東京都府中市長　府中　一郎」
    pub issuer: String,
    /// The text in the seal box (j1050).
    pub seal_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_note: Option<String>,
}

/// A certificate's content, ready to lay out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub kind: CertificateKind,
    /// e.g. 「住民票の写し」, 「転出証明書（再交付）」.
    pub title: String,
    /// Marks printed by the title, e.g. 「公用」 (j1060).
    pub marks: Vec<String>,
    pub municipality: String,
    pub issue_date: NaiveDate,
    /// 交付年月日, 和暦.
    pub issue_date_text: String,
    /// Items shared by every person (住所, 世帯主, 転出先), shown once above
    /// the persons.
    pub common: Vec<Item>,
    pub persons: Vec<PersonBlock>,
    /// Printed after the last person: 「以下余白」.
    pub end_mark: String,
    pub certification: Certification,
}

/// What j300 asks to keep about an issue that the content decides (the
/// caller adds time, place, terminal, user, page count and issue number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRecord {
    /// 証明書の種別
    pub kind: CertificateKind,
    /// 交付対象者
    pub persons: Vec<AddresseeNumber>,
    /// 記載事項: every item kind printed, in order.
    pub items: Vec<ItemKind>,
    pub with_history: bool,
}

impl Certificate {
    /// The facts j300 keeps about this issue.
    pub fn issue_record(&self) -> IssueRecord {
        let mut items: BTreeSet<ItemKind> = self.common.iter().map(|i| i.kind).collect();
        for p in &self.persons {
            items.extend(p.items.iter().map(|i| i.kind));
        }
        IssueRecord {
            kind: self.kind,
            persons: self
                .persons
                .iter()
                .map(|p| p.addressee_number.clone())
                .collect(),
            items: items.into_iter().collect(),
            with_history: self.persons.iter().any(|p| !p.history.is_empty()),
        }
    }
}

/// 発行番号 (j1040): 「発行年月日 市区町村名 発行端末名番号 発行プリンタ番号
/// 発行された順に付された番号」; the renderer appends 「ページ数/総ページ数」.
/// Terminal and printer may be blank when the device cannot be told. Every
/// copy of a multi-copy issue gets its own sequence number (j1040).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueNumber {
    pub issued_on: NaiveDate,
    pub municipality: String,
    /// e.g. 「本庁1」
    pub terminal: String,
    /// e.g. 「プリンタ001」
    pub printer: String,
    pub sequence: u32,
}

impl fmt::Display for IssueNumber {
    /// 「20200502 府中市 本庁1 プリンタ001 011」 (a blank part stays blank).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {:03}",
            self.issued_on.format("%Y%m%d"),
            self.municipality,
            self.terminal,
            self.printer,
            self.sequence
        )
    }
}

/// The text printed after the last person (以下余白).
pub const END_MARK: &str = "以下余白";

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a certificate cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("no person selected for the certificate")]
    EmptySelection,
    #[error("person {0} was selected, but their record was not given")]
    UnknownPerson(AddresseeNumber),
    #[error("a person's history is empty")]
    EmptyHistory,
    #[error("one history holds rows of different persons ({0} and {1})")]
    MixedHistory(AddresseeNumber, AddresseeNumber),
    #[error(
        "person {person} is not a resident ({status}); issue a removed-record copy (除票の写し)"
    )]
    NotResident {
        person: AddresseeNumber,
        status: &'static str,
    },
    #[error(
        "person {0} is still a resident; a removed-record copy (除票の写し) needs a removed record"
    )]
    StillResident(AddresseeNumber),
    #[error("person {0} has no recorded domestic move-out (転出), so no move-out certificate")]
    NoPlannedMoveOut(AddresseeNumber),
    #[error("the selected persons belong to different households ({0} and {1})")]
    MixedHouseholds(HouseholdNumber, HouseholdNumber),
    #[error("option {option} does not apply to {kind}")]
    OptionNotApplicable {
        option: &'static str,
        kind: CertificateKind,
    },
    #[error("no item is left to certify")]
    NoRecordItems,
    #[error("the issuer's title and name are required (j310)")]
    MissingIssuer,
    #[error("the municipality's name is required")]
    MissingMunicipality,
}

impl Localized for CertificateError {
    fn code(&self) -> &'static str {
        match self {
            Self::EmptySelection => "certificate_empty_selection",
            Self::UnknownPerson(_) => "certificate_unknown_person",
            Self::EmptyHistory => "certificate_empty_history",
            Self::MixedHistory(..) => "certificate_mixed_history",
            Self::NotResident { .. } => "certificate_not_resident",
            Self::StillResident(_) => "certificate_still_resident",
            Self::NoPlannedMoveOut(_) => "certificate_no_move_out",
            Self::MixedHouseholds(..) => "certificate_mixed_households",
            Self::OptionNotApplicable { .. } => "certificate_option_not_applicable",
            Self::NoRecordItems => "certificate_no_items",
            Self::MissingIssuer => "certificate_missing_issuer",
            Self::MissingMunicipality => "certificate_missing_municipality",
        }
    }

    fn message_ja(&self) -> String {
        match self {
            Self::EmptySelection => "証明書の対象者が選択されていません。".into(),
            Self::UnknownPerson(a) => format!("宛名番号 {a} の住民票が見つかりません。"),
            Self::EmptyHistory => "住民票の履歴がありません。".into(),
            Self::MixedHistory(a, b) => {
                format!("一人分の履歴に別の人の行が含まれています（{a}、{b}）。")
            }
            Self::NotResident { person, status } => format!(
                "宛名番号 {person} の方は住民ではありません（{status}）。除票の写しを交付してください。"
            ),
            Self::StillResident(a) => {
                format!("宛名番号 {a} の方は住民です。除票の写しは交付できません。")
            }
            Self::NoPlannedMoveOut(a) => format!(
                "宛名番号 {a} の方には国内への転出の記録がないため、転出証明書は交付できません（j660）。"
            ),
            Self::MixedHouseholds(a, b) => {
                format!("選択された方は同じ世帯ではありません（世帯番号 {a}、{b}）。")
            }
            Self::OptionNotApplicable { option, kind } => {
                format!("指定「{option}」は{kind}には使えません。")
            }
            Self::NoRecordItems => "証明する記載事項がありません。".into(),
            Self::MissingIssuer => "認証者の職名・氏名を設定してください（j310）。".into(),
            Self::MissingMunicipality => "市区町村名を設定してください。".into(),
        }
    }

    fn message_en(&self) -> String {
        self.to_string()
    }
}

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

/// Builds the content of a certificate (j1000–j1070, j660).
///
/// Per kind:
/// * 住民票の写し / 住民票記載事項証明書: residents of one household. A person
///   whose 転出 is planned after the issue date is still a resident (j50):
///   the rows the 転出届 recorded are left out (j1000, last sentence).
/// * 除票の写し / 除票記載事項証明書: persons whose record is removed on the
///   issue date, with 消除事由, its date and 転出先.
/// * 転出証明書: persons whose current row is a recorded 国内転出, with 転出先
///   and 転出予定年月日, and every item 住基令第23条 requires: 世帯主・続柄,
///   本籍・筆頭者, 住民票コード and 個人番号 are not omittable there.
pub fn build(input: &CertificateInput<'_>) -> Result<Certificate, CertificateError> {
    let CertificateInput {
        kind,
        persons,
        municipality,
        issuer,
        issue_date,
        eras,
        options,
    } = *input;
    check_options(kind, options)?;
    if municipality.trim().is_empty() {
        return Err(CertificateError::MissingMunicipality);
    }
    if issuer.title.trim().is_empty() || issuer.name.trim().is_empty() {
        return Err(CertificateError::MissingIssuer);
    }

    let states = persons
        .iter()
        .map(|rows| PersonState::of(rows, issue_date))
        .collect::<Result<Vec<_>, _>>()?;
    let chosen = select(kind, &states, &options.persons)?;
    let chosen = order(chosen, options);

    let mut households: Vec<&HouseholdNumber> = Vec::new();
    for s in &chosen {
        let h = &s.current.record.household_number;
        if let Some(first) = households.first() {
            if *first != h {
                return Err(CertificateError::MixedHouseholds(
                    (*first).clone(),
                    h.clone(),
                ));
            }
        } else {
            households.push(h);
        }
    }

    let show = Shown::of(kind, options);
    let mut blocks: Vec<PersonBlock> = chosen
        .iter()
        .map(|s| PersonBlock {
            addressee_number: s.current.record.addressee_number.clone(),
            items: items_of(kind, s, &show, eras),
            history: if options.with_history {
                history_of(s, &show, eras)
            } else {
                Vec::new()
            },
        })
        .collect();
    if blocks.iter().all(|b| b.items.is_empty()) {
        return Err(CertificateError::NoRecordItems);
    }
    let common = take_common(&mut blocks);

    let mut title = kind.title_ja().to_string();
    if options.reissue {
        title.push_str("（再交付）");
    }
    let marks = if options.official_use {
        vec!["公用".to_string()]
    } else {
        Vec::new()
    };
    let whole = options.persons == PersonSelection::WholeHousehold;
    let issue_date_text = eras.format_wareki(issue_date);
    let certification = Certification {
        sentence: certification_sentence(kind, whole).to_string(),
        date: issue_date_text.clone(),
        issuer: format!("{}　{}", issuer.title.trim(), issuer.name.trim()),
        seal_text: issuer
            .seal_text
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| format!("{}之印", issuer.title.trim())),
        seal_note: issuer.seal_note.clone().filter(|s| !s.trim().is_empty()),
    };
    Ok(Certificate {
        kind,
        title,
        marks,
        municipality: municipality.trim().to_string(),
        issue_date,
        issue_date_text,
        common,
        persons: blocks,
        end_mark: END_MARK.to_string(),
        certification,
    })
}

/// 認証文 per kind (j1000: 第４章の認証文).
fn certification_sentence(kind: CertificateKind, whole_household: bool) -> &'static str {
    match kind {
        CertificateKind::ResidentCopy if whole_household => {
            "この写しは、世帯全員の住民票の原本と相違ないことを証明する。"
        }
        CertificateKind::ResidentCopy => "この写しは、住民票の原本と相違ないことを証明する。",
        CertificateKind::RemovedCopy => "この写しは、住民票の除票の原本と相違ないことを証明する。",
        CertificateKind::RecordItemsCertificate => {
            "上記の事項は、住民票に記載されていることを証明する。"
        }
        CertificateKind::RemovedRecordItemsCertificate => {
            "上記の事項は、住民票の除票に記載されていることを証明する。"
        }
        CertificateKind::MoveOutCertificate => "上記の者は、転出の届出をしたことを証明する。",
    }
}

fn check_options(kind: CertificateKind, o: &CertificateOptions) -> Result<(), CertificateError> {
    let not = |option| Err(CertificateError::OptionNotApplicable { option, kind });
    if o.persons == PersonSelection::Persons(Vec::new()) {
        return Err(CertificateError::EmptySelection);
    }
    if !kind.is_items_certificate() && o.record_items.is_some() {
        return not("record_items");
    }
    if !kind.is_items_certificate() && o.omit_address_annex {
        return not("omit_address_annex");
    }
    if kind.is_items_certificate() && o.record_items.as_ref().is_some_and(Vec::is_empty) {
        return Err(CertificateError::NoRecordItems);
    }
    if !kind.is_j1000() && o.with_history {
        return not("with_history");
    }
    if !kind.is_j1000() && o.official_use {
        return not("official_use");
    }
    if kind != CertificateKind::MoveOutCertificate && o.reissue {
        return not("reissue");
    }
    Ok(())
}

/// A person as the certificate sees them on the issue date.
struct PersonState<'a> {
    /// Rows in 履歴番号 order, without the rows of a 転出 planned after the
    /// issue date, of cancelled changes and of the cancellations themselves
    /// (the rows either side of a cancelled change are compared instead).
    visible: Vec<&'a HistoryRow>,
    /// The row the certificate shows.
    current: &'a HistoryRow,
    /// The highest 履歴番号, a pending 転出 included.
    latest: &'a HistoryRow,
    /// A resident on the issue date (a 転出予定者 still is, j50).
    resident: bool,
}

impl<'a> PersonState<'a> {
    fn of(rows: &'a [HistoryRow], issue_date: NaiveDate) -> Result<Self, CertificateError> {
        let mut sorted: Vec<&HistoryRow> = rows.iter().collect();
        sorted.sort_by_key(|r| r.history_number);
        let first = sorted.first().ok_or(CertificateError::EmptyHistory)?;
        let latest = *sorted.last().ok_or(CertificateError::EmptyHistory)?;
        let who = &first.record.addressee_number;
        if let Some(other) = sorted.iter().find(|r| &r.record.addressee_number != who) {
            return Err(CertificateError::MixedHistory(
                who.clone(),
                other.record.addressee_number.clone(),
            ));
        }
        // j1000/j50: before the planned date, what the 転出届 recorded is not
        // yet in effect. The rows it appended (for the movers and for those
        // who stay) are dated on the planned date, after the issue date.
        while sorted.len() > 1
            && sorted.last().is_some_and(|r| {
                matches!(
                    r.change.reason,
                    ChangeReason::MoveOut | ChangeReason::MoveOutAbroad
                ) && r.change.cancels.is_none()
                    && r.change
                        .effective_date
                        .as_calendar()
                        .is_some_and(|d| d > issue_date)
            })
        {
            sorted.pop();
        }
        let current = *sorted.last().ok_or(CertificateError::EmptyHistory)?;
        let cancelled: BTreeSet<i64> = sorted.iter().filter_map(|r| r.change.cancels).collect();
        let visible = sorted
            .into_iter()
            .filter(|r| r.change.cancels.is_none() && !cancelled.contains(&r.change.change_id))
            .collect();
        Ok(PersonState {
            resident: current.record.status.is_resident(),
            current,
            latest,
            visible,
        })
    }

    fn record(&self) -> &'a ResidentRecord {
        &self.current.record
    }

    fn who(&self) -> &'a AddresseeNumber {
        &self.current.record.addressee_number
    }

    /// Why this person cannot be on a `kind` certificate, if they cannot.
    fn unfit_for(&self, kind: CertificateKind) -> Option<CertificateError> {
        let who = self.who().clone();
        match kind {
            CertificateKind::ResidentCopy | CertificateKind::RecordItemsCertificate => {
                (!self.resident).then(|| CertificateError::NotResident {
                    person: who,
                    status: self.record().status.label_ja(),
                })
            }
            CertificateKind::RemovedCopy | CertificateKind::RemovedRecordItemsCertificate => self
                .resident
                .then_some(CertificateError::StillResident(who)),
            CertificateKind::MoveOutCertificate => {
                // The 転出証明書 is about the recorded 転出 itself, before or
                // after its planned date, so it looks at the latest row.
                (!self.has_domestic_move_out()).then_some(CertificateError::NoPlannedMoveOut(who))
            }
        }
    }

    fn has_domestic_move_out(&self) -> bool {
        let r = self.latest_row();
        r.change.reason == ChangeReason::MoveOut
            && r.change.cancels.is_none()
            && r.record.status == ResidentStatus::MovedOut
            && r.record.removal.as_ref().is_some_and(|m| {
                m.reason == ChangeReason::MoveOut
                    && m.destination.as_ref().is_some_and(|d| !d.abroad)
            })
    }

    /// The latest row including a pending 転出 (for the 転出証明書).
    fn latest_row(&self) -> &'a HistoryRow {
        self.latest
    }
}

/// Picks the persons the certificate is about.
fn select<'a, 'b>(
    kind: CertificateKind,
    states: &'b [PersonState<'a>],
    selection: &PersonSelection,
) -> Result<Vec<&'b PersonState<'a>>, CertificateError> {
    let chosen: Vec<&PersonState<'a>> = match selection {
        PersonSelection::WholeHousehold => states
            .iter()
            .filter(|s| s.unfit_for(kind).is_none())
            .collect(),
        PersonSelection::Persons(list) => {
            let mut out = Vec::new();
            for a in list {
                let s = states
                    .iter()
                    .find(|s| s.who() == a)
                    .ok_or_else(|| CertificateError::UnknownPerson(a.clone()))?;
                if let Some(e) = s.unfit_for(kind) {
                    return Err(e);
                }
                if !out.iter().any(|o: &&PersonState<'a>| o.who() == a) {
                    out.push(s);
                }
            }
            out
        }
    };
    if chosen.is_empty() {
        return Err(CertificateError::EmptySelection);
    }
    Ok(chosen)
}

fn order<'a, 'b>(
    mut chosen: Vec<&'b PersonState<'a>>,
    options: &CertificateOptions,
) -> Vec<&'b PersonState<'a>> {
    if options.order == MemberOrder::Standard {
        chosen.sort_by_key(|s| standard_order_key(s.record()));
    }
    chosen
}

/// The sort key of j1010's order for one member: 順位 and 順位内の並び,
/// 筆頭者 first, 生年月日 (不詳 last), 宛名番号.
///
/// The group comes from the 続柄 alone, so j1010's finer rule for families
/// (a child who has a family in the household moves to 第２順位 with it, and
/// each child's family is kept together) is approximated: children's
/// spouses and children follow all children, by birth date. A municipality
/// that needs the exact order keeps it and uses [`MemberOrder::AsGiven`].
pub fn standard_order_key(r: &ResidentRecord) -> MemberOrderKey {
    let rel = r.relationship.as_str();
    let (rank, sub) = match rel {
        "世帯主" => (1, 1),
        "妻" | "夫" | "妻（未届）" | "夫（未届）" => (1, 2),
        "子" => (1, 3),
        "子の妻" | "子の夫" => (2, 2),
        "子の子" => (2, 3),
        _ if rel.starts_with("子の子の") => (2, 4),
        "父" | "母" => (3, 1),
        "兄" | "姉" | "弟" | "妹" => (3, 2),
        "父の父" | "父の母" | "母の父" | "母の母" => (3, 3),
        "縁故者" => (4, 2),
        "同居人" => (4, 3),
        _ => (4, 1),
    };
    // j1010 3-1, 3-3: 筆頭者の方を先に記載.
    let is_family_head = r
        .registered_domicile
        .as_ref()
        .is_some_and(|d| d.head.trim() == r.name.as_str().trim());
    let head_first = if rank == 3 && sub != 2 && !is_family_head {
        1
    } else {
        0
    };
    let birth = match r.birth_date.sort_key() {
        Some(k) => (0, k),
        None => (1, (0, 0, 0)),
    };
    // 宛名番号 as a number: pad so that "99" sorts before "100".
    let number = format!("{:0>15}", r.addressee_number.as_str());
    MemberOrderKey {
        group: (rank, sub),
        family_head_first: head_first,
        birth,
        addressee: number,
    }
}

/// Where a member stands in j1010's order; compare keys to sort.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberOrderKey {
    /// (順位, 順位内の並び), e.g. (1, 2) for the head's spouse.
    pub group: (u8, u8),
    /// 0 for the 筆頭者 among parents or grandparents, else 1.
    pub family_head_first: u8,
    /// (0, birth date) or (1, _) when the birth date is 年月日不詳.
    pub birth: (u8, (i32, u32, u32)),
    /// 宛名番号, zero-padded.
    pub addressee: String,
}

/// Which items the certificate shows.
struct Shown {
    kind: CertificateKind,
    head_and_relationship: bool,
    registered_domicile: bool,
    resident_code: bool,
    my_number: bool,
    foreign_status: bool,
    furigana: bool,
    annex: bool,
    only: Option<BTreeSet<ItemKind>>,
}

impl Shown {
    fn of(kind: CertificateKind, o: &CertificateOptions) -> Self {
        // 転出証明書: 住基令第23条 lists these items; they are not omittable.
        let all = kind == CertificateKind::MoveOutCertificate;
        Shown {
            kind,
            head_and_relationship: all || o.head_and_relationship,
            registered_domicile: all || o.registered_domicile,
            resident_code: all || o.resident_code,
            my_number: all || o.my_number,
            foreign_status: all || o.foreign_status,
            furigana: o.furigana,
            annex: !(kind.is_items_certificate() && o.omit_address_annex),
            only: o
                .record_items
                .as_ref()
                .map(|items| items.iter().copied().collect()),
        }
    }

    fn allows(&self, kind: ItemKind) -> bool {
        let flag = match kind {
            ItemKind::HeadOfHousehold | ItemKind::Relationship => self.head_and_relationship,
            ItemKind::RegisteredDomicile | ItemKind::FamilyRegisterHead => self.registered_domicile,
            ItemKind::ResidentCode => self.resident_code,
            ItemKind::MyNumber => self.my_number,
            ItemKind::Nationality
            | ItemKind::ResidenceStatus
            | ItemKind::PeriodOfStay
            | ItemKind::StayExpiresOn
            | ItemKind::ResidenceCardNumber => self.foreign_status,
            ItemKind::RemovalReason => self.kind.is_removed(),
            ItemKind::RemovalDate | ItemKind::Destination => {
                self.kind.is_removed() || self.kind == CertificateKind::MoveOutCertificate
            }
            _ => true,
        };
        flag && self.only.as_ref().is_none_or(|only| only.contains(&kind))
    }
}

/// The items of one person, in the standard order (j10, j20, j1000).
fn items_of(
    kind: CertificateKind,
    s: &PersonState<'_>,
    show: &Shown,
    eras: &EraTable,
) -> Vec<Item> {
    // The 転出証明書 shows the row the 転出 recorded, even before its date.
    let row = if kind == CertificateKind::MoveOutCertificate {
        s.latest_row()
    } else {
        s.current
    };
    let r = &row.record;
    let foreign = r.kind == ResidentKind::Foreign;
    let date = |d: &DateValue| d.display_wareki(eras);
    let mut items: Vec<Item> = Vec::new();
    let mut push = |kind: ItemKind, label: &str, value: String| {
        if show.allows(kind) && !value.trim().is_empty() {
            items.push(Item {
                kind,
                label: label.to_string(),
                value,
            });
        }
    };

    let kana = |k: Option<&crate::names::Furigana>| match k {
        Some(k) if show.furigana => format!("　（{}）", k.as_str()),
        _ => String::new(),
    };
    let name = match &r.foreign {
        Some(f) if !f.alphabet_name.trim().is_empty() && f.alphabet_name != r.name.as_str() => {
            format!("{}　{}", f.alphabet_name, r.name)
        }
        _ => r.name.to_string(),
    };
    push(
        ItemKind::Name,
        "氏名",
        format!("{name}{}", kana(r.name_kana.as_ref())),
    );
    if let Some(f) = &r.foreign
        && let Some(alias) = &f.alias
    {
        push(
            ItemKind::Alias,
            "通称",
            format!("{alias}{}", kana(f.alias_kana.as_ref())),
        );
    }
    // j90: a foreign resident's birth date in 西暦.
    let birth = if foreign {
        r.birth_date.display_seireki(eras)
    } else {
        date(&r.birth_date)
    };
    push(ItemKind::BirthDate, "生年月日", birth);
    push(ItemKind::Sex, "性別", r.sex.label_ja().to_string());
    if let Some(h) = &r.head_name {
        push(ItemKind::HeadOfHousehold, "世帯主", h.to_string());
    }
    push(
        ItemKind::Relationship,
        "続柄",
        r.relationship.as_str().to_string(),
    );
    if let Some(d) = &r.registered_domicile {
        push(ItemKind::RegisteredDomicile, "本籍", d.domicile.clone());
        push(ItemKind::FamilyRegisterHead, "筆頭者", d.head.clone());
    }
    if let Some(d) = &r.resident_since {
        let label = if foreign {
            "外国人住民となった年月日"
        } else {
            "住民となった年月日"
        };
        push(ItemKind::ResidentSince, label, date(d));
    }
    let address = if show.annex {
        r.address.full()
    } else {
        r.address.address.clone()
    };
    push(ItemKind::Address, "住所", address);
    if let Some(d) = &r.address_since {
        push(ItemKind::AddressSince, "住所を定めた年月日", date(d));
    }
    if let Some(filed) = address_filed_on(&s.visible, &row.record.address) {
        push(
            ItemKind::AddressFiledOn,
            "届出年月日",
            eras.format_wareki(filed),
        );
    }
    if let Some(p) = &r.previous_address {
        push(ItemKind::PreviousAddress, "前住所", p.clone());
    }
    if let Some(n) = &r.my_number {
        push(ItemKind::MyNumber, "個人番号", n.to_string());
    }
    if let Some(c) = &r.resident_code {
        push(ItemKind::ResidentCode, "住民票コード", c.to_string());
    }
    if let Some(f) = &r.foreign {
        push(ItemKind::Nationality, "国籍・地域", f.nationality.clone());
        push(
            ItemKind::ResidenceStatus,
            "在留資格",
            f.residence_status.clone(),
        );
        if let Some(p) = &f.period_of_stay {
            push(ItemKind::PeriodOfStay, "在留期間", p.clone());
        }
        if let Some(e) = &f.stay_expires_on {
            // j90: 在留期間の満了の日 in 西暦.
            push(
                ItemKind::StayExpiresOn,
                "在留期間の満了の日",
                e.display_seireki(eras),
            );
        }
        if let Some(c) = &f.card_number {
            push(
                ItemKind::ResidenceCardNumber,
                "在留カード等の番号",
                c.clone(),
            );
        }
    }
    if let Some(m) = &r.removal {
        push(
            ItemKind::RemovalReason,
            "消除事由",
            m.reason.label_ja().to_string(),
        );
        let label = match m.reason {
            ChangeReason::MoveOut | ChangeReason::MoveOutAbroad => "転出予定年月日",
            ChangeReason::Death => "死亡年月日",
            _ => "消除事由の生じた年月日",
        };
        push(ItemKind::RemovalDate, label, date(&m.date));
        if let Some(d) = &m.destination {
            let value = match &d.annex {
                Some(a) if !a.trim().is_empty() => format!("{}　{}", d.address, a),
                _ => d.address.clone(),
            };
            push(ItemKind::Destination, "転出先", value);
        }
    }
    items
}

/// 住所を定めた旨の届出の年月日: the 届出日 of the change that brought the
/// person to `address` (the oldest row of the latest run of rows with it).
fn address_filed_on(rows: &[&HistoryRow], address: &crate::model::Address) -> Option<NaiveDate> {
    let mut since = None;
    for r in rows.iter().rev() {
        if r.record.address != *address {
            break;
        }
        since = Some(r);
    }
    since.and_then(|r| r.change.filed_on)
}

/// The history lines of one person (j1000 履歴): one per change still in
/// effect, with what it altered among the items shown. Cancelled changes and
/// the cancellations themselves are left out, and so is a 転出 planned after
/// the issue date.
fn history_of(s: &PersonState<'_>, show: &Shown, eras: &EraTable) -> Vec<HistoryLine> {
    let mut lines = Vec::new();
    let mut before: Option<&ResidentRecord> = None;
    for row in s.visible.iter().copied() {
        let r = &row.record;
        let mut details = Vec::new();
        match before {
            None => {
                if let Some(p) = &r.previous_address {
                    details.push(format!("前住所　{p}"));
                }
            }
            Some(b) => {
                if b.address != r.address {
                    let shown = if show.annex {
                        b.address.full()
                    } else {
                        b.address.address.clone()
                    };
                    details.push(format!("前住所　{shown}"));
                }
                if b.name != r.name {
                    details.push(format!("旧氏名　{}", b.name));
                }
                if show.head_and_relationship {
                    if b.head_name != r.head_name
                        && let Some(h) = &b.head_name
                    {
                        details.push(format!("旧世帯主　{h}"));
                    }
                    if b.relationship != r.relationship {
                        details.push(format!("旧続柄　{}", b.relationship));
                    }
                }
                if show.registered_domicile
                    && b.registered_domicile != r.registered_domicile
                    && let Some(d) = &b.registered_domicile
                {
                    details.push(format!("旧本籍　{}　旧筆頭者　{}", d.domicile, d.head));
                }
                if show.resident_code
                    && b.resident_code != r.resident_code
                    && let Some(c) = &b.resident_code
                {
                    details.push(format!("旧住民票コード　{c}"));
                }
            }
        }
        let removal = row.change.reason.category() == ReasonCategory::Removal;
        if removal && let Some(d) = r.removal.as_ref().and_then(|m| m.destination.as_ref()) {
            details.push(format!("転出先　{}", d.address));
        }
        if before.is_none() || removal || !details.is_empty() {
            lines.push(HistoryLine {
                date: row.change.effective_date.display_wareki(eras),
                reason: row.change.reason.label_ja().to_string(),
                filed_on: row.change.filed_on.map(|d| eras.format_wareki(d)),
                details,
            });
        }
        before = Some(r);
    }
    lines
}

/// Moves the items every person shares (住所, 世帯主, 転出先) to the top.
fn take_common(blocks: &mut [PersonBlock]) -> Vec<Item> {
    let mut common = Vec::new();
    for kind in ItemKind::SHARED {
        let values: Vec<Option<&Item>> = blocks
            .iter()
            .map(|b| b.items.iter().find(|i| i.kind == kind))
            .collect();
        let Some(Some(first)) = values.first() else {
            continue;
        };
        if values.iter().all(|v| v.is_some_and(|v| v == *first)) {
            common.push((*first).clone());
        }
    }
    for b in blocks.iter_mut() {
        b.items.retain(|i| !common.iter().any(|c| c.kind == i.kind));
    }
    common
}

#[cfg(test)]
mod tests;
