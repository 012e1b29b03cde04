//! The access log (j1370) as a supervisor reads it: what was done in
//! words, and the entry's details as labelled items, never the stored
//! codes or JSON. A procedure is named by its title: the shipped ones and
//! the tenant's own, from the definitions the back office stored
//! ([`Procedures`]).

use machi_domain::change::ChangeReason;
use machi_domain::dates::EraTable;
use serde_json::Value;

use super::{Lang, when};

/// The titles of the procedures a tenant knows, by procedure id: (Japanese,
/// English), the newest version's (shipped and the tenant's own, from
/// [`crate::store::procedure_definitions::all`]).
pub type Procedures = std::collections::HashMap<String, (String, String)>;

/// [`Procedures`] from a tenant's definitions.
pub fn procedures(defs: &[std::sync::Arc<machi_procedures::Definition>]) -> Procedures {
    crate::service::inbox::procedures_of(defs)
        .into_iter()
        .map(|(id, ja, en)| (id, (ja, en)))
        .collect()
}

/// What a function of the access log did, in Japanese and English.
pub fn function_label(code: &str) -> (String, String) {
    if let Some(r) = code
        .strip_prefix("change.")
        .and_then(ChangeReason::from_code)
    {
        return (
            format!("異動の本登録（{}）", r.label_ja()),
            format!("change committed ({})", r.label_en()),
        );
    }
    let (ja, en) = match code {
        "login" => ("ログイン", "sign-in"),
        "login.failed" => ("ログイン失敗", "failed sign-in"),
        "login.throttled" => ("ログイン制限", "sign-in throttled"),
        "logout" => ("ログアウト", "sign-out"),
        "read.search" => ("住民の検索", "search"),
        "read.resident" => ("住民票の参照", "resident record read"),
        "read.household" => ("世帯の参照", "household read"),
        "read.change" => ("異動の参照", "change read"),
        "read.changes" => ("異動一覧の参照", "change list read"),
        "read.events" => ("連携イベントの取得", "linkage events read"),
        "read.my_number" => ("個人番号の表示", "My Number shown"),
        "read.provisional" => ("仮登録の参照", "provisional change read"),
        "read.provisional_list" => ("仮登録一覧の参照", "provisional list read"),
        "change.provisional" => ("異動の仮登録", "change entered provisionally"),
        "change.approve" => ("仮登録の決裁（本登録）", "provisional change approved"),
        "change.return" => ("仮登録の差戻し", "provisional change sent back"),
        "change.withdraw" => ("仮登録の取下げ", "provisional change withdrawn"),
        "certificate.issue" => ("証明書の交付", "certificate issued"),
        "certificate.verify" => ("証明書の真正性確認", "certificate verified"),
        "support.register" => ("支援措置の申出受付", "support measure registered"),
        "support.confirm" => ("支援措置の本登録", "support measure confirmed"),
        "support.extend" => ("支援措置の延長", "support measure extended"),
        "support.end" => ("支援措置の終了", "support measure ended"),
        "support.cancel" => ("支援措置の取消し", "support measure cancelled"),
        "support.view" => ("支援措置の参照", "support measure read"),
        "support.list" => ("支援措置一覧の参照", "support measure list read"),
        "support.list_active" => ("有効な支援措置の参照", "active support measures read"),
        "support.list_releases" => ("解除記録の参照", "releases read"),
        "support.release" => ("抑止の解除（1件）", "one request released"),
        "support.release_used" => ("解除の使用", "release used"),
        "support.blocked" => ("支援措置による抑止", "blocked by a support measure"),
        "account.create" => ("職員アカウントの作成", "staff account created"),
        "account.role" => ("職員の役割の変更", "staff role changed"),
        "account.enable" => ("職員アカウントの有効化", "staff account enabled"),
        "account.disable" => ("職員アカウントの停止", "staff account disabled"),
        "account.activate" => ("アカウントの利用開始", "account activated"),
        "account.activate.failed" => ("利用開始の失敗", "activation failed"),
        "account.activate.throttled" => ("利用開始の制限", "activation throttled"),
        "account.activation_reissue" => ("利用開始コードの再発行", "activation code reissued"),
        "client.create" => ("連携先の登録", "API client registered"),
        "client.scopes" => ("連携先の権限の変更", "API client scopes changed"),
        "client.direct_commit" => ("連携先の直接本登録の設定", "API client direct commits set"),
        "client.enable" => ("連携先の有効化", "API client enabled"),
        "client.disable" => ("連携先の停止", "API client disabled"),
        "client.rotate" => ("連携先の秘密情報の更新", "API client secret rotated"),
        "grant.propose" => ("権限の申請", "access proposed"),
        "grant.approve" => ("権限の承認", "access approved"),
        "grant.reject" => ("権限の却下", "access rejected"),
        "grant.withdraw" => ("権限申請の取下げ", "access proposal withdrawn"),
        "settings.issuer" => ("認証者の設定", "certifying officer set"),
        "settings.certificate_fee" => ("証明書手数料の設定", "certificate fee set"),
        "settings.extract_schedule" => ("ファイル連携の定期抽出の設定", "extract schedule set"),
        "token.issue" => ("アクセストークンの発行", "access token issued"),
        "webhook.subscribe" => ("通知先の登録", "webhook subscribed"),
        "webhook.unsubscribe" => ("通知先の削除", "webhook unsubscribed"),
        "webhook.replay" => ("通知の再送", "webhook replayed"),
        "webhook.rotate_secret" => ("通知の署名鍵の更新", "webhook secret rotated"),
        "webhook.pause" => ("通知の一時停止", "webhook paused"),
        "webhook.resume" => ("通知の再開", "webhook resumed"),
        "audit.view" => ("アクセスログの参照", "access log viewed"),
        "filing.list" => ("申請一覧の参照", "filing list read"),
        "filing.view" => ("申請の参照", "filing read"),
        "filing.attachment" => ("申請の添付ファイルの参照", "filing attachment read"),
        "filing.assign" => ("申請の担当設定", "filing assigned"),
        "filing.match" => ("申請者と住民の照合", "filing matched to a resident"),
        "filing.correction" => ("申請の補正依頼", "filing sent back for correction"),
        "filing.reject" => ("申請の却下", "filing rejected"),
        "filing.approve" => ("申請の承認", "filing approved"),
        "filing.decided" => ("申請による異動の決裁", "filing's change decided"),
        "filing.returned" => (
            "申請による仮登録の差戻し",
            "filing's provisional change sent back",
        ),
        "filing.move_out_data" => ("転出証明書情報の参照", "move-out certificate data read"),
        "counter_filing.file" => ("窓口での申請の受付", "procedure filed at the counter"),
        "procedure_definition.accept" => (
            "ポータルから届いた手続定義の受入れ",
            "procedure definition from the portal accepted",
        ),
        "procedure_definition.refuse" => (
            "ポータルから届いた手続定義の受入れ拒否",
            "procedure definition from the portal refused",
        ),
        "procedure_definition.withdraw" => (
            "ポータルから届いた手続定義の受入れの取消し",
            "acceptance of a procedure definition from the portal withdrawn",
        ),
        "filing.refusals" => (
            "取り込めなかった申請の一覧の参照",
            "list of filings refused on import read",
        ),
        "filing.deferrals" => (
            "取込みを保留している申請の一覧の参照",
            "list of filings held back on import read",
        ),
        "filing.reimport" => (
            "取り込めなかった申請の取り込み直し",
            "filing refused on import imported again",
        ),
        _ => ("", ""),
    };
    if ja.is_empty() {
        // A function this page has no name for yet: its code in words.
        let words = code.replace(['.', '_'], " ");
        return (format!("その他（{words}）"), format!("other ({words})"));
    }
    (ja.to_string(), en.to_string())
}

fn key_label(key: &str) -> (&'static str, &'static str) {
    match key {
        "pending_id" => ("仮登録番号", "provisional no."),
        "change_id" => ("異動番号", "change no."),
        "change_ids" => ("異動番号", "change nos."),
        "cancels" => ("取り消した異動", "cancels"),
        "reason" => ("事由", "reason"),
        "status" => ("状態", "status"),
        "entries" => ("件数", "entries"),
        "count" => ("件数", "count"),
        "results" => ("件数", "results"),
        "pages" => ("ページ", "pages"),
        "as_of" => ("基準日", "as of"),
        "recorded_as_of" => ("記録時点", "as recorded at"),
        "household_number" => ("世帯番号", "household no."),
        "household" => ("世帯", "household"),
        "addressee_number" => ("宛名番号", "addressee no."),
        "persons" => ("対象者", "persons"),
        "protected_persons" => ("対象者", "protected persons"),
        "measure_id" => ("支援措置番号", "measure no."),
        "measure_ids" => ("支援措置番号", "measure nos."),
        "release_id" | "release_ids" => ("解除番号", "release no."),
        "purpose" => ("用途", "purpose"),
        "granted_to" => ("解除を受けた職員", "released for"),
        "grant_id" => ("申請番号", "proposal no."),
        "proposal" => ("申請内容", "proposal"),
        "proposed_by" => ("申請者", "proposed by"),
        "role" => ("役割", "role"),
        "scope" | "scopes" => ("権限", "scopes"),
        "direct_commit" => ("直接本登録", "direct commits"),
        "name" => ("氏名", "name"),
        "name_kana" => ("フリガナ", "reading"),
        "birth_date" => ("生年月日", "date of birth"),
        "sex" => ("性別", "sex"),
        "address" => ("住所", "address"),
        "include_history" | "with_history" => ("履歴を含む", "with history"),
        "include_removed" => ("除票を含む", "with former residents"),
        "kind" => ("種類", "kind"),
        "issue_number" => ("発行番号", "issue no."),
        "items" => ("記載事項", "items"),
        "copy" => ("通番", "copy"),
        "copies" => ("通数", "copies"),
        "fee" => ("手数料（円）", "fee (yen)"),
        "request" => ("請求", "request"),
        "requester" => ("請求者", "requester"),
        "requester_name" => ("請求者氏名", "requester's name"),
        "identity" => ("本人確認", "identity check"),
        "power_of_attorney" => ("委任状", "power of attorney"),
        "identity_document" => ("本人確認書類", "identity document"),
        "appeared_as" => ("窓口に来た方", "who came"),
        "representative_name" => ("代理人の氏名", "representative"),
        "representative_relationship" => ("本人との関係", "relationship"),
        "receipt" => ("受付番号", "receipt no."),
        "version" => ("版", "version"),
        "ground" => ("請求事由", "ground"),
        "pdf_sha256" => ("PDFの要約値", "PDF digest"),
        "genuine" => ("真正", "genuine"),
        "recorded" => ("記録", "recorded"),
        "withheld" => ("非表示", "withheld"),
        "from" => ("開始", "from"),
        "to" => ("終了", "to"),
        "from_seq" | "to_seq" => ("連番", "sequence"),
        "operator" => ("操作者", "operator"),
        "function" => ("機能", "function"),
        "target" => ("対象", "target"),
        "late" => ("深夜のみ", "late night only"),
        "comment" => ("コメント", "comment"),
        "entered_by" => ("入力者", "entered by"),
        "effective_date" => ("異動日", "effective"),
        "filed_on" => ("届出日", "filed"),
        "start_date" | "provisional_start" => ("開始日", "start"),
        "end_date" | "end_corrected" => ("終了日", "end"),
        "expires_at" => ("有効期限", "expires"),
        "input_place" => ("入力場所", "place"),
        "input_terminal" => ("入力端末", "terminal"),
        "municipality_code" => ("団体コード", "municipality code"),
        "prefecture" => ("都道府県", "prefecture"),
        "title" => ("表題", "title"),
        "subscription_id" => ("通知先番号", "subscription no."),
        "client_id" => ("連携先ID", "client ID"),
        "replay_from" => ("再送の開始番号", "replay from"),
        "missing_chars" => ("未登録の文字", "missing characters"),
        "history_number" => ("履歴番号", "history no."),
        "relationship" => ("続柄", "relationship"),
        "postal_code" => ("郵便番号", "postal code"),
        "previous_address" => ("前住所", "previous address"),
        "annex" => ("方書", "building / room"),
        "filing_id" => ("申請番号", "filing no."),
        "superseded_by" => ("承認した補正後の申請", "corrected filing approved"),
        "outcome" => ("結果", "outcome"),
        "code" => ("理由", "reason"),
        "message_chars" => ("メッセージの文字数", "message length"),
        "party" => ("照合した人", "person"),
        "assigned_to" => ("担当", "assigned to"),
        "procedure" => ("手続", "procedure"),
        "issue_numbers" => ("発行番号", "issue nos."),
        "batch" => ("発行の控え", "issue batch"),
        "mailing" => ("郵送", "by post"),
        "event_seq" => ("連携イベント番号", "linkage event no."),
        "system" => ("業務システム", "business system"),
        "returned_pending_id" => ("差し戻された仮登録", "provisional change sent back"),
        "sha256" => ("定義の要約値", "definition digest"),
        "decision" => ("判断", "decision"),
        "times" => ("抽出の時刻", "times"),
        "weekdays" => ("曜日", "days"),
        "server_default" => ("サーバーの既定に戻す", "server default"),
        _ => ("", ""),
    }
}

/// A value of the detail as a person reads it.
fn value_text(key: &str, v: &Value, l: Lang, eras: &EraTable, p: &Procedures) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => l
            .t(
                if *b { "あり" } else { "なし" },
                if *b { "yes" } else { "no" },
            )
            .into(),
        Value::Number(n) => match key {
            // Times are stored in microseconds since the epoch.
            "recorded_as_of" | "expires_at" => n.as_i64().map(when).unwrap_or_default(),
            // The extract schedule's days of the week (a bit set).
            "weekdays" => n
                .as_i64()
                .and_then(crate::linkage::Weekdays::from_bits)
                .map(|w| w.words(l.en))
                .unwrap_or_default(),
            _ => n.to_string(),
        },
        Value::String(s) => string_text(key, s, l, eras, p),
        Value::Array(items) => items
            .iter()
            .map(|i| value_text(key, i, l, eras, p))
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("、"),
        Value::Object(_) => detail_text(v, l, eras, p),
    }
}

fn string_text(key: &str, s: &str, l: Lang, eras: &EraTable, p: &Procedures) -> String {
    if let Some(r) = ChangeReason::from_code(s)
        && matches!(key, "reason" | "kind" | "type")
    {
        return l.t(r.label_ja(), r.label_en()).into();
    }
    if key == "status"
        && let Some(p) = crate::store::pending::PendingStatus::parse(s)
    {
        return l.t(p.label_ja(), p.label_en()).into();
    }
    if key == "status"
        && let Some(f) = crate::service::inbox::FilingStatus::parse(s)
    {
        return l.t(f.label_ja(), f.label_en()).into();
    }
    if key == "procedure" {
        if let Some((ja, en)) = p.get(s) {
            return l.t(ja, en).to_string();
        }
        if let Some(d) = (1..=20).find_map(|v| crate::service::inbox::definition(s, v)) {
            return crate::service::inbox::procedure_title(s, i64::from(d.version()), l.en);
        }
    }
    if key == "kind" {
        // The file-linkage schedule's kind of extract.
        match s {
            "full" => return l.t("全件", "full").into(),
            "diff" => return l.t("差分", "difference").into(),
            _ => {}
        }
    }
    if key == "outcome" {
        match s {
            "imported" => return l.t("取り込んだ", "imported").into(),
            "already" => {
                return l
                    .t(
                        "取込み済みのため何もしていない",
                        "imported before: nothing done",
                    )
                    .into();
            }
            "refused" => return l.t("再び取り込めなかった", "refused again").into(),
            _ => {}
        }
    }
    if key == "code"
        && let Some((ja, en)) = crate::portal::refusal_words(s)
    {
        return l.t(ja, en).into();
    }
    if key == "decision" {
        match s {
            "accepted" => return l.t("受入れ", "accepted").into(),
            "refused" => return l.t("受入れ拒否", "refused").into(),
            _ => {}
        }
    }
    if key == "party" {
        if s == "applicant" {
            return l.t("申請者", "applicant").into();
        }
        if let Some(n) = s
            .strip_prefix("members.")
            .and_then(|n| n.parse::<usize>().ok())
        {
            return format!("{}{}", l.t("届出の", "person "), n + 1).to_string() + l.t("人目", "");
        }
    }
    if key == "status"
        && let Some(m) = machi_domain::support::MeasureStatus::from_code(s)
    {
        return m.label_ja().into();
    }
    if key == "purpose"
        && let Some(p) = machi_domain::support::SupportPurpose::from_code(s)
    {
        return l.t(p.label_ja(), p.label_en()).into();
    }
    if key == "role"
        && let Some(r) = machi_domain::access::Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
    {
        return l.t(r.label_ja(), r.label_en()).into();
    }
    if key == "kind"
        && let Some(k) = machi_domain::certificate::CertificateKind::from_code(s)
    {
        return k.title_ja().into();
    }
    if key == "items"
        && let Some(i) = machi_domain::certificate::ItemKind::from_code(s)
    {
        return l.t(i.label_ja(), i.label_en()).into();
    }
    {
        use machi_domain::certificate::counter::{IdentityDocument, Requester, ThirdPartyGround};
        let label = match key {
            "requester" => Requester::from_code(s).map(|r| (r.label_ja(), r.label_en())),
            "identity" => IdentityDocument::from_code(s).map(|d| (d.label_ja(), d.label_en())),
            "ground" => ThirdPartyGround::from_code(s).map(|g| (g.label_ja(), g.label_en())),
            _ => None,
        };
        if let Some((ja, en)) = label {
            return l.t(ja, en).into();
        }
    }
    if key == "sex" {
        match s {
            "male" => return "男".into(),
            "female" => return "女".into(),
            _ => {}
        }
    }
    // A function code (e.g. a proposal's kind `client.create`) by name.
    if key == "function" || (s.contains('.') && !s.contains(' ') && s.is_ascii()) {
        let (ja, en) = function_label(s);
        if key == "function" || !ja.starts_with("その他") {
            return l.t(&ja, &en).to_string();
        }
    }
    // An ISO date (e.g. an "as of" date) in 和暦.
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return eras.format_wareki(d);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return when(t.timestamp_micros());
    }
    s.replace('_', " ")
}

/// An access-log entry's details (stored as JSON) as labelled items:
/// 「仮登録番号 3・事由 国内転入」.
pub fn detail_text(v: &Value, l: Lang, eras: &EraTable, p: &Procedures) -> String {
    match v {
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, x)| {
                let text = value_text(k, x, l, eras, p);
                if text.is_empty() {
                    return None;
                }
                let (ja, en) = key_label(k);
                let label = if ja.is_empty() {
                    k.replace('_', " ")
                } else {
                    l.t(ja, en).to_string()
                };
                Some(format!("{label} {text}"))
            })
            .collect::<Vec<_>>()
            .join(l.t("・", "; ")),
        other => value_text("", other, l, eras, p),
    }
}

/// The stored detail string (JSON, or plain text) as a person reads it.
pub fn detail_of(stored: &str, l: Lang, eras: &EraTable, p: &Procedures) -> String {
    match serde_json::from_str::<Value>(stored) {
        Ok(v) => detail_text(&v, l, eras, p),
        Err(_) => stored.to_string(),
    }
}

/// The target column: addressee numbers as stored; a provisional change,
/// an API client and a procedure by name ("仮登録 3", "連携先 demo",
/// "手続 粗大ごみ収集の申込み 第1版").
pub fn target_text(stored: &str, l: Lang, p: &Procedures) -> String {
    stored
        .split(',')
        .map(|t| {
            if t == "portal_refusals" {
                l.t("取り込めなかった申請", "filings refused on import")
                    .to_string()
            } else if t == "portal_deferrals" {
                l.t("取込みを保留している申請", "filings held back on import")
                    .to_string()
            } else if let Some(id) = t.strip_prefix("portal_refusal:") {
                // The portal's id: opaque; its start is enough to tell
                // one refused filing from another.
                format!(
                    "{}{}…",
                    l.t("取り込めなかった申請 ", "refused filing "),
                    id.chars().take(12).collect::<String>()
                )
            } else if let Some(n) = t.strip_prefix("pending:") {
                format!("{}{n}", l.t("仮登録 ", "provisional "))
            } else if let Some(n) = t.strip_prefix("filing:") {
                format!("{}{n}", l.t("申請 ", "filing "))
            } else if let Some(rest) = t.strip_prefix("procedure:") {
                let (id, version) = rest.rsplit_once(':').unwrap_or((rest, ""));
                let title = p
                    .get(id)
                    .map(|(ja, en)| l.t(ja, en).to_string())
                    .unwrap_or_else(|| l.t("不明な手続", "unknown procedure").to_string());
                if version.is_empty() {
                    format!("{}{title}", l.t("手続 ", "procedure "))
                } else if l.en {
                    format!("procedure {title}, version {version}")
                } else {
                    format!("手続 {title} 第{version}版")
                }
            } else if let Some(c) = t.strip_prefix("client:") {
                format!("{}{c}", l.t("連携先 ", "client "))
            } else {
                t.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
