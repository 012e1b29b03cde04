//! What a change form knows before the clerk types (書かない窓口): the
//! household's members, the person's current values, the tenant's own
//! addresses. Loaded from the registry for the form the clerk opened from a
//! resident, a household or a change; every read is logged like the page
//! it came from.

use axum::response::Response;
use machi_domain::change::AsOf;
use machi_domain::ids::{AddresseeNumber, HouseholdNumber, MunicipalityCode};

use super::Ctx;
use super::forms::FormData;
use crate::api::AppState;
use crate::api::views::ResidentView;
use crate::service::addresses::KnownAddress;

/// A member of the household the form concerns.
pub struct Member {
    pub addressee_number: String,
    pub name: String,
    pub relationship: String,
    /// Ticked in the form: named by the link or the clerk.
    pub checked: bool,
}

/// What the form shows beside its fields.
#[derive(Default)]
pub struct Known {
    pub household_number: String,
    pub household_address: String,
    pub members: Vec<Member>,
    /// The person a death, removal or correction concerns: name (宛名番号).
    pub person_label: String,
    /// The tenant's addresses, offered for the address field.
    pub addresses: Vec<KnownAddress>,
}

/// Form kinds whose persons are chosen among a household's members.
pub const PERSON_LIST_KINDS: [&str; 3] = ["move_within", "move_out", "move_out_abroad"];
/// Form kinds with one existing person.
const PERSON_KINDS: [&str; 4] = [
    "death",
    "ex_officio_correction",
    "clerical_correction",
    "ex_officio_removal",
];
/// Form kinds whose address is in this municipality.
const OWN_ADDRESS_KINDS: [&str; 4] = [
    "move_within",
    "move_in",
    "move_in_from_abroad",
    "ex_officio_entry",
];
/// How many addresses the list offers.
const ADDRESS_LIMIT: usize = 300;

fn set_if_empty(f: &mut FormData, k: &str, v: &str) {
    if f.get(k).is_none() && !v.is_empty() {
        f.0.retain(|(n, _)| n != k);
        f.0.push((k.to_string(), v.to_string()));
    }
}

/// Fills `f` with what the registry knows for form `kind` and returns what
/// the form shows beside it. A refusal (e.g. a support-measure block, j440)
/// is the error page the resident or household page would give.
pub async fn load(
    s: &AppState,
    ctx: &Ctx,
    tenant: &MunicipalityCode,
    kind: &str,
    f: &mut FormData,
) -> Result<Known, Response> {
    let mut known = Known::default();
    let actor = ctx.caller.actor();
    let eras = s.registry.eras();
    if OWN_ADDRESS_KINDS.contains(&kind) {
        known.addresses = s
            .registry
            .address_book(tenant, f.get("addr_q"), ADDRESS_LIMIT)
            .await
            .map_err(|e| ctx.error(&e.into()))?;
    }
    // The one person the form is about.
    let person: Option<AddresseeNumber> = if PERSON_KINDS.contains(&kind) {
        f.get("person").and_then(|p| p.parse().ok())
    } else {
        None
    };
    let mut household: Option<HouseholdNumber> = f
        .get("household_number")
        .or_else(|| {
            if kind == "household_merge" {
                f.get("from_household")
            } else {
                None
            }
        })
        .and_then(|h| h.parse().ok());
    let named: Vec<String> = f
        .all("persons")
        .iter()
        .flat_map(|v| v.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    let first_named: Option<AddresseeNumber> = person
        .clone()
        .or_else(|| named.first().and_then(|p| p.parse().ok()));
    if let Some(p) = &first_named {
        let (row, _) = s
            .registry
            .resident(tenant, p, AsOf::default(), &actor)
            .await
            .map_err(|e| {
                ctx.refused(
                    e,
                    &format!("宛名番号 {p}"),
                    &format!("Addressee number {p}"),
                )
            })?;
        let v = ResidentView::new(&row, eras);
        if household.is_none() {
            household = Some(row.record.household_number.clone());
        }
        if person.is_some() {
            known.person_label = format!("{}（{}）", v.name, v.addressee_number);
            if kind.ends_with("_correction") {
                let dom = v.registered_domicile.as_ref();
                for (k, cur) in [
                    ("patch_name", v.name.clone()),
                    ("patch_name_kana", v.name_kana.clone().unwrap_or_default()),
                    ("patch_birth_date", v.birth_date.text.clone()),
                    ("patch_relationship", v.relationship.clone()),
                    (
                        "patch_domicile",
                        dom.map(|d| d.domicile.clone()).unwrap_or_default(),
                    ),
                    (
                        "patch_domicile_head",
                        dom.map(|d| d.head.clone()).unwrap_or_default(),
                    ),
                    (
                        "patch_address_annex",
                        v.address_annex.clone().unwrap_or_default(),
                    ),
                    (
                        "patch_postal_code",
                        v.postal_code.clone().unwrap_or_default(),
                    ),
                    (
                        "patch_resident_code",
                        v.resident_code.clone().unwrap_or_default(),
                    ),
                    (
                        "patch_address_since",
                        v.address_since
                            .as_ref()
                            .map(|d| d.text.clone())
                            .unwrap_or_default(),
                    ),
                    (
                        "patch_resident_since",
                        v.resident_since
                            .as_ref()
                            .map(|d| d.text.clone())
                            .unwrap_or_default(),
                    ),
                    ("patch_sex", v.sex.clone()),
                ] {
                    if f.get(&format!("cur_{k}")).is_none() && f.get(k).is_none() {
                        set_if_empty(f, &format!("cur_{k}"), &cur);
                        set_if_empty(f, k, &cur);
                    }
                }
            }
        }
    }
    let Some(h) = household else {
        return Ok(known);
    };
    let rows = s
        .registry
        .household(tenant, &h, AsOf::default(), &actor)
        .await
        .map_err(|e| {
            ctx.refused(
                e,
                &format!("世帯番号 {h}"),
                &format!("Household number {h}"),
            )
        })?;
    let views: Vec<ResidentView> = rows.iter().map(|r| ResidentView::new(r, eras)).collect();
    known.household_number = h.to_string();
    known.household_address = views
        .first()
        .map(|m| match &m.address_annex {
            Some(a) => format!("{}　{}", m.address, a),
            None => m.address.clone(),
        })
        .unwrap_or_default();
    // From a household page with nobody named: the whole household.
    let whole = named.is_empty() && person.is_none();
    known.members = views
        .iter()
        .map(|v| Member {
            checked: if whole {
                PERSON_LIST_KINDS.contains(&kind)
            } else {
                named.contains(&v.addressee_number)
                    || person
                        .as_ref()
                        .is_some_and(|p| p.as_str() == v.addressee_number)
            },
            addressee_number: v.addressee_number.clone(),
            name: v.name.clone(),
            relationship: v.relationship.clone(),
        })
        .collect();
    match kind {
        "birth" | "head_change" => set_if_empty(f, "household_number", h.as_str()),
        "household_merge" => set_if_empty(f, "from_household", h.as_str()),
        _ => {}
    }
    // 続柄 lines: the members concerned, with their current 続柄, for the
    // clerk to change where the household changes.
    let rel_lines = |only_checked: bool| -> String {
        known
            .members
            .iter()
            .filter(|m| !only_checked || m.checked)
            .map(|m| format!("{} {}", m.addressee_number, m.relationship))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match kind {
        "household_merge" => {
            let lines = rel_lines(false);
            set_if_empty(f, "relationships", &lines);
        }
        "household_split" | "household_transfer" | "move_within" => {
            let lines = rel_lines(true);
            set_if_empty(f, "relationships", &lines);
        }
        _ => {}
    }
    Ok(known)
}

/// The postal code of a chosen address, from the tenant's address book, when
/// the clerk left it empty.
pub async fn fill_postal_code(s: &AppState, tenant: &MunicipalityCode, f: &mut FormData) {
    if f.get("postal_code").is_some() {
        return;
    }
    let Some(a) = f.get("address").map(str::to_string) else {
        return;
    };
    if let Ok(Some(code)) = s.registry.postal_code_of(tenant, &a).await {
        set_if_empty(f, "postal_code", &code);
    }
}
