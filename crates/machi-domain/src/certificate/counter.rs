//! A certificate request at the counter (住民票の写し等の交付請求): who asks
//! (本人 / 同一世帯の者 / 代理人 / 第三者) and in what relation, the identity
//! document shown (本人確認), the purpose (請求事由), copies (通数) and fee
//! (手数料).
//!
//! The 交付請求者区分 is recorded with every issue (j1220: 発行日・交付請求者
//! 区分（本人、代理人、第三者）・証明書種別・枚数) together with the 交付履歴
//! items (j300). Several copies get one 発行番号 each (j1040). The refusals
//! the law on the register requires of third-party requests (住民基本台帳法
//! 第12条の3): the purpose must be stated with its ground, and neither the
//! 個人番号 nor the 住民票コード is ever given to a third party; a 個人番号
//! is not handed to a proxy at the counter either (it goes by post to the
//! person's address). Checked by [`CounterRequest::check`]; the fee by
//! [`fee`].

use serde::{Deserialize, Serialize};

use super::{CertificateKind, CertificateOptions};
use crate::error::Localized;

/// The most copies one request may ask for.
pub const MAX_COPIES: u32 = 10;

/// 交付請求者区分.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requester {
    /// 本人.
    Themselves,
    /// 同一世帯の者.
    SameHousehold,
    /// 代理人 (with a 委任状).
    Proxy,
    /// 第三者 (住民基本台帳法第12条の3).
    ThirdParty,
}

impl Requester {
    pub const ALL: [Requester; 4] = [
        Requester::Themselves,
        Requester::SameHousehold,
        Requester::Proxy,
        Requester::ThirdParty,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Requester::Themselves => "self",
            Requester::SameHousehold => "household",
            Requester::Proxy => "proxy",
            Requester::ThirdParty => "third_party",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Requester::Themselves => "本人",
            Requester::SameHousehold => "同一世帯の者",
            Requester::Proxy => "代理人",
            Requester::ThirdParty => "第三者",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            Requester::Themselves => "the person",
            Requester::SameHousehold => "a household member",
            Requester::Proxy => "a proxy",
            Requester::ThirdParty => "a third party",
        }
    }
}

/// 本人確認書類: the document the requester showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityDocument {
    MyNumberCard,
    DriversLicence,
    Passport,
    ResidenceCard,
    /// 健康保険証等（2点）.
    TwoDocuments,
    /// 官公署の身分証明書等 (official request: 職員証).
    OfficialId,
}

impl IdentityDocument {
    pub const ALL: [IdentityDocument; 6] = [
        IdentityDocument::MyNumberCard,
        IdentityDocument::DriversLicence,
        IdentityDocument::Passport,
        IdentityDocument::ResidenceCard,
        IdentityDocument::TwoDocuments,
        IdentityDocument::OfficialId,
    ];

    pub fn code(self) -> &'static str {
        match self {
            IdentityDocument::MyNumberCard => "my_number_card",
            IdentityDocument::DriversLicence => "drivers_licence",
            IdentityDocument::Passport => "passport",
            IdentityDocument::ResidenceCard => "residence_card",
            IdentityDocument::TwoDocuments => "two_documents",
            IdentityDocument::OfficialId => "official_id",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            IdentityDocument::MyNumberCard => "マイナンバーカード",
            IdentityDocument::DriversLicence => "運転免許証",
            IdentityDocument::Passport => "旅券（パスポート）",
            IdentityDocument::ResidenceCard => "在留カード・特別永住者証明書",
            IdentityDocument::TwoDocuments => "健康保険証等（2点）",
            IdentityDocument::OfficialId => "職員証（公用請求）",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            IdentityDocument::MyNumberCard => "My Number Card",
            IdentityDocument::DriversLicence => "driving licence",
            IdentityDocument::Passport => "passport",
            IdentityDocument::ResidenceCard => "residence card",
            IdentityDocument::TwoDocuments => "two documents (e.g. health insurance card)",
            IdentityDocument::OfficialId => "staff ID (official request)",
        }
    }
}

/// The ground a third party states (住民基本台帳法第12条の3第1項).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThirdPartyGround {
    /// 自己の権利を行使し、又は自己の義務を履行するために必要.
    OwnRightOrDuty,
    /// 国又は地方公共団体の機関に提出する必要.
    SubmissionToAuthority,
    /// その他正当な理由.
    OtherLegitimate,
}

impl ThirdPartyGround {
    pub const ALL: [ThirdPartyGround; 3] = [
        ThirdPartyGround::OwnRightOrDuty,
        ThirdPartyGround::SubmissionToAuthority,
        ThirdPartyGround::OtherLegitimate,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ThirdPartyGround::OwnRightOrDuty => "own_right",
            ThirdPartyGround::SubmissionToAuthority => "submission",
            ThirdPartyGround::OtherLegitimate => "other_legitimate",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == s)
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            ThirdPartyGround::OwnRightOrDuty => "自己の権利行使・義務履行に必要",
            ThirdPartyGround::SubmissionToAuthority => "国・地方公共団体の機関への提出",
            ThirdPartyGround::OtherLegitimate => "その他正当な理由",
        }
    }

    pub fn label_en(self) -> &'static str {
        match self {
            ThirdPartyGround::OwnRightOrDuty => "to exercise a right or fulfil a duty",
            ThirdPartyGround::SubmissionToAuthority => "to submit to a public authority",
            ThirdPartyGround::OtherLegitimate => "another legitimate reason",
        }
    }
}

/// What the clerk entered about the request. `None` and empty strings are
/// what was left blank; [`CounterRequest::check`] says what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterRequest {
    pub requester: Option<Requester>,
    /// 請求者の氏名 (the person themself may be left blank).
    pub requester_name: String,
    /// 対象者との関係 (e.g. 妻, 子, 債権者).
    pub relationship: String,
    pub identity: Option<IdentityDocument>,
    /// A proxy's 委任状 was seen.
    pub power_of_attorney: bool,
    pub ground: Option<ThirdPartyGround>,
    /// 請求事由 as stated (required of a third party).
    pub purpose: String,
    /// 通数; 0 when not given.
    pub copies: u32,
}

/// The shortest statement of purpose a third party may give: a ground alone
/// ("相続") is not a purpose (the law asks for it to be made clear).
pub const MIN_PURPOSE_CHARS: usize = 6;

/// Why a counter request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    #[error("choose who is asking")]
    NoRequester,
    #[error("give the requester's name")]
    NoRequesterName,
    #[error("give the requester's relation to the person")]
    NoRelationship,
    #[error("choose the identity document shown")]
    NoIdentity,
    #[error("a proxy needs a power of attorney")]
    NoPowerOfAttorney,
    #[error("a third party must state the ground and the purpose")]
    NoPurpose,
    #[error("a third party is never given a My Number or a resident code")]
    ThirdPartyRestrictedItem,
    #[error("a My Number is not handed to a proxy")]
    ProxyMyNumber,
    #[error("copies must be 1 to {MAX_COPIES}")]
    Copies,
}

impl Localized for CounterError {
    fn code(&self) -> &'static str {
        match self {
            CounterError::NoRequester => "no_requester",
            CounterError::NoRequesterName => "no_requester_name",
            CounterError::NoRelationship => "no_relationship",
            CounterError::NoIdentity => "no_identity_check",
            CounterError::NoPowerOfAttorney => "no_power_of_attorney",
            CounterError::NoPurpose => "no_purpose",
            CounterError::ThirdPartyRestrictedItem => "third_party_restricted_item",
            CounterError::ProxyMyNumber => "proxy_my_number",
            CounterError::Copies => "invalid_copies",
        }
    }

    fn message_ja(&self) -> String {
        match self {
            CounterError::NoRequester => "請求者（本人・同一世帯の者・代理人・第三者）を選んでください。".into(),
            CounterError::NoRequesterName => "請求者の氏名を入力してください。".into(),
            CounterError::NoRelationship => "対象者との関係を入力してください。".into(),
            CounterError::NoIdentity => "本人確認に用いた書類を選んでください。".into(),
            CounterError::NoPowerOfAttorney => "代理人の請求には委任状の確認が必要です。".into(),
            CounterError::NoPurpose => format!(
                "第三者の請求には請求事由の区分と具体的な利用目的（{MIN_PURPOSE_CHARS}文字以上）が必要です（住民基本台帳法第12条の3）。"
            ),
            CounterError::ThirdPartyRestrictedItem => "第三者には個人番号・住民票コードを記載した写しを交付できません（住民基本台帳法第12条の3）。".into(),
            CounterError::ProxyMyNumber => "個人番号を記載した写しは代理人に窓口で交付できません。本人の住所あてに郵送してください。".into(),
            CounterError::Copies => format!("通数は1〜{MAX_COPIES}通で入力してください。"),
        }
    }

    fn message_en(&self) -> String {
        match self {
            CounterError::NoRequester => "choose who is asking (the person, a household member, a proxy or a third party)".into(),
            CounterError::NoRequesterName => "give the requester's name".into(),
            CounterError::NoRelationship => "give the requester's relation to the person".into(),
            CounterError::NoIdentity => "choose the identity document that was shown".into(),
            CounterError::NoPowerOfAttorney => "a proxy's request needs a checked power of attorney".into(),
            CounterError::NoPurpose => format!(
                "a third party must give the ground and the concrete purpose ({MIN_PURPOSE_CHARS} characters or more)"
            ),
            CounterError::ThirdPartyRestrictedItem => "a third party is never given a copy showing a My Number or a resident code".into(),
            CounterError::ProxyMyNumber => "a copy showing a My Number is not handed to a proxy; post it to the person's address".into(),
            CounterError::Copies => format!("copies must be 1 to {MAX_COPIES}"),
        }
    }
}

impl CounterRequest {
    /// Whether the request may be served with these options, or the first
    /// thing that stops it.
    pub fn check(&self, options: &CertificateOptions) -> Result<(), CounterError> {
        let requester = self.requester.ok_or(CounterError::NoRequester)?;
        if self.identity.is_none() {
            return Err(CounterError::NoIdentity);
        }
        if requester != Requester::Themselves {
            if self.requester_name.trim().is_empty() {
                return Err(CounterError::NoRequesterName);
            }
            if self.relationship.trim().is_empty() {
                return Err(CounterError::NoRelationship);
            }
        }
        match requester {
            Requester::Proxy => {
                if !self.power_of_attorney {
                    return Err(CounterError::NoPowerOfAttorney);
                }
                if options.my_number {
                    return Err(CounterError::ProxyMyNumber);
                }
            }
            Requester::ThirdParty => {
                if options.my_number || options.resident_code {
                    return Err(CounterError::ThirdPartyRestrictedItem);
                }
                if self.ground.is_none() || self.purpose.trim().chars().count() < MIN_PURPOSE_CHARS
                {
                    return Err(CounterError::NoPurpose);
                }
            }
            Requester::Themselves | Requester::SameHousehold => {}
        }
        if !(1..=MAX_COPIES).contains(&self.copies) {
            return Err(CounterError::Copies);
        }
        Ok(())
    }
}

/// 手数料: `per_copy` yen for each copy; none for 公用 (an authority's
/// request) and for a 転出証明書 (issued free with the move-out).
pub fn fee(per_copy: i64, copies: u32, kind: CertificateKind, official_use: bool) -> i64 {
    if official_use || kind == CertificateKind::MoveOutCertificate {
        0
    } else {
        per_copy.max(0) * i64::from(copies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asking(requester: Requester) -> CounterRequest {
        CounterRequest {
            requester: Some(requester),
            requester_name: "架空 花子".into(),
            relationship: "妻".into(),
            identity: Some(IdentityDocument::DriversLicence),
            power_of_attorney: false,
            ground: None,
            purpose: String::new(),
            copies: 1,
        }
    }

    #[test]
    fn the_person_and_the_household_need_an_identity_check_only() {
        let o = CertificateOptions {
            my_number: true,
            resident_code: true,
            ..Default::default()
        };
        let mut me = asking(Requester::Themselves);
        me.requester_name.clear();
        me.relationship.clear();
        assert_eq!(me.check(&o), Ok(()));
        assert_eq!(asking(Requester::SameHousehold).check(&o), Ok(()));
        me.identity = None;
        assert_eq!(me.check(&o), Err(CounterError::NoIdentity));
        assert_eq!(
            CounterRequest::default().check(&o),
            Err(CounterError::NoRequester)
        );
    }

    #[test]
    fn a_proxy_needs_a_power_of_attorney_and_gets_no_my_number() {
        let mut p = asking(Requester::Proxy);
        let plain = CertificateOptions::default();
        assert_eq!(p.check(&plain), Err(CounterError::NoPowerOfAttorney));
        p.power_of_attorney = true;
        assert_eq!(p.check(&plain), Ok(()));
        let mn = CertificateOptions {
            my_number: true,
            ..Default::default()
        };
        assert_eq!(p.check(&mn), Err(CounterError::ProxyMyNumber));
        p.relationship = " ".into();
        assert_eq!(p.check(&plain), Err(CounterError::NoRelationship));
    }

    #[test]
    fn a_third_party_states_a_purpose_and_never_gets_the_numbers() {
        let mut t = asking(Requester::ThirdParty);
        t.relationship = "債権者".into();
        let plain = CertificateOptions::default();
        assert_eq!(t.check(&plain), Err(CounterError::NoPurpose));
        t.ground = Some(ThirdPartyGround::OwnRightOrDuty);
        t.purpose = "相続".into();
        assert_eq!(t.check(&plain), Err(CounterError::NoPurpose), "too short");
        t.purpose = "貸金返還請求訴訟の提起のため".into();
        assert_eq!(t.check(&plain), Ok(()));
        for o in [
            CertificateOptions {
                my_number: true,
                ..Default::default()
            },
            CertificateOptions {
                resident_code: true,
                ..Default::default()
            },
        ] {
            assert_eq!(t.check(&o), Err(CounterError::ThirdPartyRestrictedItem));
        }
        t.requester_name.clear();
        assert_eq!(t.check(&plain), Err(CounterError::NoRequesterName));
    }

    #[test]
    fn copies_and_fees() {
        let mut r = asking(Requester::SameHousehold);
        let o = CertificateOptions::default();
        for bad in [0, MAX_COPIES + 1] {
            r.copies = bad;
            assert_eq!(r.check(&o), Err(CounterError::Copies));
        }
        r.copies = 3;
        assert_eq!(r.check(&o), Ok(()));
        assert_eq!(fee(300, 3, CertificateKind::ResidentCopy, false), 900);
        assert_eq!(fee(300, 3, CertificateKind::ResidentCopy, true), 0);
        assert_eq!(fee(300, 1, CertificateKind::MoveOutCertificate, false), 0);
        assert_eq!(fee(-5, 2, CertificateKind::ResidentCopy, false), 0);
    }

    #[test]
    fn codes_round_trip() {
        for r in Requester::ALL {
            assert_eq!(Requester::from_code(r.code()), Some(r));
        }
        for d in IdentityDocument::ALL {
            assert_eq!(IdentityDocument::from_code(d.code()), Some(d));
        }
        for g in ThirdPartyGround::ALL {
            assert_eq!(ThirdPartyGround::from_code(g.code()), Some(g));
        }
        assert_eq!(Requester::from_code("boss"), None);
    }
}
