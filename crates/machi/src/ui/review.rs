//! A change as a reviewer reads it (審査・決裁, j530): each person's record
//! before and after side by side, what differs marked, and the warnings
//! the rules raise. Shared by the provisional-change and change pages.

use machi_domain::change::Notice;
use machi_domain::change::review::compare;
use machi_domain::dates::EraTable;

use super::{Lang, UiError};
use crate::service::approvals::Review;

/// One item of a person's record, before and after.
pub struct ItemView {
    pub label: String,
    pub before: String,
    pub after: String,
    pub changed: bool,
}

/// One person of a change.
pub struct PersonView {
    pub name: String,
    /// 宛名番号, or empty for a person a provisional change enters (the
    /// number is given on approval).
    pub number: String,
    pub new_person: bool,
    pub changed: usize,
    pub items: Vec<ItemView>,
}

/// A change as the reviewer reads it.
pub struct ReviewView {
    pub reason: String,
    pub effective_date: String,
    pub filed_on: String,
    pub input_place: String,
    pub persons: Vec<PersonView>,
    pub warnings: Vec<String>,
    pub notices: Vec<String>,
    /// Why the registry would refuse the entry today.
    pub refused: Option<String>,
}

impl ReviewView {
    pub fn new(mut r: Review, notices: &[Notice], lang: Lang, eras: &EraTable) -> ReviewView {
        let on_approval = lang.t("（承認時に付番）", "(numbered on approval)");
        let refused = r.refused.take().map(|e| {
            let e = UiError::from(e);
            lang.t(&e.ja, &e.en).to_string()
        });
        ReviewView {
            refused,
            reason: r
                .reason
                .map(|x| lang.t(x.label_ja(), x.label_en()).to_string())
                .unwrap_or_default(),
            effective_date: r
                .effective_date
                .as_ref()
                .map(|d| d.display_wareki(eras))
                .unwrap_or_default(),
            filed_on: r
                .filed_on
                .as_ref()
                .map(|d| d.display_wareki(eras))
                .unwrap_or_default(),
            input_place: r.input_place.clone(),
            persons: r
                .persons
                .iter()
                .map(|p| {
                    let items: Vec<ItemView> = compare(p.before.as_ref(), &p.after, eras, lang.en)
                        .into_iter()
                        .map(|i| {
                            let mut after = i.after;
                            if i.label_ja == "世帯番号" && p.household_on_approval {
                                after = format!(
                                    "{}{on_approval}",
                                    lang.t("新しい世帯", "new household")
                                );
                            }
                            ItemView {
                                label: lang.t(i.label_ja, i.label_en).to_string(),
                                before: i.before,
                                after,
                                changed: i.changed,
                            }
                        })
                        .collect();
                    PersonView {
                        name: p.after.name.as_str().to_string(),
                        number: if p.number_on_approval {
                            String::new()
                        } else {
                            p.after.addressee_number.to_string()
                        },
                        new_person: p.before.is_none(),
                        changed: items.iter().filter(|i| i.changed).count(),
                        items,
                    }
                })
                .collect(),
            warnings: r
                .warnings
                .iter()
                .map(|w| {
                    if lang.en {
                        w.message_en()
                    } else {
                        w.message_ja()
                    }
                })
                .collect(),
            notices: notices
                .iter()
                .map(|n| {
                    if lang.en {
                        n.message_en()
                    } else {
                        n.message_ja()
                    }
                })
                .collect(),
        }
    }
}
