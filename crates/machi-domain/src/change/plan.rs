//! Validating a change against the current state and computing the new
//! snapshot rows it appends (j200, j460–j490, j560–j860).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use super::command::*;
use super::error::ChangeError;
use super::reason::ChangeReason;
use crate::dates::{DatePolicy, DateValue, EraTable};
use crate::ids::{AddresseeNumber, HouseholdNumber, MyNumber, PostalCode, ResidentCode};
use crate::model::*;
use crate::names::{Furigana, PersonName};
use crate::relationship::Relationship;

/// The current records a change needs, loaded by the caller before planning:
/// every person the command names, and every current member of every
/// household involved (the named ones and those of the named persons).
#[derive(Debug, Default, Clone)]
pub struct RegistryView {
    pub persons: HashMap<AddresseeNumber, ResidentRecord>,
    /// Current resident members of each household, by addressee number.
    pub households: HashMap<HouseholdNumber, Vec<AddresseeNumber>>,
}

impl RegistryView {
    /// Adds a current record (and its household membership if a resident).
    pub fn insert(&mut self, r: ResidentRecord) {
        if r.status.is_resident() {
            let members = self
                .households
                .entry(r.household_number.clone())
                .or_default();
            if !members.contains(&r.addressee_number) {
                members.push(r.addressee_number.clone());
            }
        }
        self.persons.insert(r.addressee_number.clone(), r);
    }

    fn person(&self, a: &AddresseeNumber) -> Result<&ResidentRecord, ChangeError> {
        self.persons
            .get(a)
            .ok_or_else(|| ChangeError::PersonNotFound(a.clone()))
    }

    fn resident(&self, a: &AddresseeNumber) -> Result<&ResidentRecord, ChangeError> {
        let r = self.person(a)?;
        if !r.status.is_resident() {
            return Err(ChangeError::NotAResident(a.clone(), r.status.label_ja()));
        }
        Ok(r)
    }

    fn members(&self, h: &HouseholdNumber) -> Result<Vec<&ResidentRecord>, ChangeError> {
        let ids = self
            .households
            .get(h)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ChangeError::HouseholdNotFound(h.clone()))?;
        ids.iter().map(|a| self.resident(a)).collect()
    }
}

/// Numbers allocated by the caller for the change (j130).
#[derive(Debug, Default, Clone)]
pub struct Allocated {
    pub addressees: Vec<AddresseeNumber>,
    pub household: Option<HouseholdNumber>,
}

/// The rules a change is checked with that are not in the request itself.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    pub eras: &'a EraTable,
    /// 処理日 (j480): the processing day, set by the system.
    pub today: NaiveDate,
    /// The municipality recording the change, for the rules that depend on
    /// where an address lies (転居, j630). None: not checked (e.g. a
    /// migration replaying another system's history).
    pub municipality: Option<&'a super::locality::Municipality>,
}

/// Something the clerk must be told or must print after the change (j490, j500).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// j490: the single remaining member was made head ex officio.
    HeadAssigned {
        household_number: HouseholdNumber,
        addressee_number: AddresseeNumber,
    },
    /// j490, j500: the household is left without a head; a 世帯主変更依頼通知書 is due.
    HeadChangeRequested { household_number: HouseholdNumber },
}

/// What a validated change appends: one new snapshot per affected person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePlan {
    pub reason: ChangeReason,
    pub effective_date: DateValue,
    pub filed_on: Option<NaiveDate>,
    pub rows: Vec<ResidentRecord>,
    pub notices: Vec<Notice>,
}

impl ChangeRequest {
    /// The persons the command names, parsed.
    pub fn referenced_persons(&self) -> Result<Vec<AddresseeNumber>, ChangeError> {
        let mut out = Vec::new();
        match &self.command {
            ChangeCommand::MoveWithin {
                persons, household, ..
            } => {
                out.extend(addressees("persons", persons)?);
                if let Some(h) = household {
                    let rels = match h {
                        MoveWithinHousehold::New { relationships }
                        | MoveWithinHousehold::Join { relationships, .. } => relationships,
                    };
                    out.extend(rel_addressees(rels)?);
                }
            }
            ChangeCommand::MoveOut { persons, .. }
            | ChangeCommand::MoveOutAbroad { persons, .. } => {
                out.extend(addressees("persons", persons)?)
            }
            ChangeCommand::Death { person }
            | ChangeCommand::ExOfficioRemoval { person }
            | ChangeCommand::ExOfficioCorrection { person, .. }
            | ChangeCommand::ClericalCorrection { person, .. } => {
                out.push(addressee("person", person)?)
            }
            ChangeCommand::HouseholdSplit { relationships }
            | ChangeCommand::HouseholdMerge { relationships, .. }
            | ChangeCommand::HouseholdTransfer { relationships, .. } => {
                out.extend(rel_addressees(relationships)?)
            }
            ChangeCommand::HeadChange {
                new_head,
                relationships,
                ..
            } => {
                out.push(addressee("new_head", new_head)?);
                out.extend(rel_addressees(relationships)?);
            }
            ChangeCommand::MoveIn { .. }
            | ChangeCommand::MoveInFromAbroad { .. }
            | ChangeCommand::Birth { .. }
            | ChangeCommand::ExOfficioEntry { .. }
            | ChangeCommand::Cancel { .. } => {}
        }
        Ok(out)
    }

    /// The households the command names, parsed.
    pub fn referenced_households(&self) -> Result<Vec<HouseholdNumber>, ChangeError> {
        let target = |t: &HouseholdTarget| -> Result<Option<HouseholdNumber>, ChangeError> {
            match t {
                HouseholdTarget::Join { household_number } => {
                    household("household.household_number", household_number).map(Some)
                }
                HouseholdTarget::New { .. } => Ok(None),
            }
        };
        Ok(match &self.command {
            ChangeCommand::MoveIn { household, .. }
            | ChangeCommand::MoveInFromAbroad { household, .. }
            | ChangeCommand::ExOfficioEntry { household, .. } => {
                target(household)?.into_iter().collect()
            }
            ChangeCommand::Birth {
                household_number, ..
            } => vec![self::household("household_number", household_number)?],
            ChangeCommand::MoveWithin {
                household:
                    Some(MoveWithinHousehold::Join {
                        household_number, ..
                    }),
                ..
            } => vec![self::household(
                "household.household_number",
                household_number,
            )?],
            ChangeCommand::HouseholdMerge {
                from_household,
                into_household,
                ..
            } => vec![
                self::household("from_household", from_household)?,
                self::household("into_household", into_household)?,
            ],
            ChangeCommand::HouseholdTransfer { into_household, .. } => {
                vec![self::household("into_household", into_household)?]
            }
            ChangeCommand::HeadChange {
                household_number, ..
            } => vec![self::household("household_number", household_number)?],
            _ => vec![],
        })
    }

    /// How many new addressee numbers the change needs.
    pub fn new_person_count(&self) -> usize {
        match &self.command {
            ChangeCommand::MoveIn { persons, .. }
            | ChangeCommand::MoveInFromAbroad { persons, .. } => persons.len(),
            ChangeCommand::Birth { .. } | ChangeCommand::ExOfficioEntry { .. } => 1,
            _ => 0,
        }
    }

    /// Whether the change forms a new household (needs a new 世帯番号).
    pub fn needs_new_household(&self) -> bool {
        match &self.command {
            ChangeCommand::MoveIn { household, .. }
            | ChangeCommand::MoveInFromAbroad { household, .. }
            | ChangeCommand::ExOfficioEntry { household, .. } => {
                matches!(household, HouseholdTarget::New { .. })
            }
            ChangeCommand::MoveWithin { household, .. } => {
                matches!(household, Some(MoveWithinHousehold::New { .. }))
            }
            ChangeCommand::HouseholdSplit { .. } => true,
            _ => false,
        }
    }

    /// The identities of new persons, to look for earlier records (j600).
    pub fn new_person_identities(&self) -> Vec<(Option<MyNumber>, Option<ResidentCode>)> {
        let persons: Vec<&NewPerson> = match &self.command {
            ChangeCommand::MoveIn { persons, .. }
            | ChangeCommand::MoveInFromAbroad { persons, .. } => persons.iter().collect(),
            ChangeCommand::Birth { person, .. } | ChangeCommand::ExOfficioEntry { person, .. } => {
                vec![person]
            }
            _ => vec![],
        };
        persons
            .into_iter()
            .map(|p| {
                (
                    p.my_number.as_deref().and_then(|s| s.parse().ok()),
                    p.resident_code.as_deref().and_then(|s| s.parse().ok()),
                )
            })
            .collect()
    }
}

fn addressee(field: &str, s: &str) -> Result<AddresseeNumber, ChangeError> {
    s.parse::<AddresseeNumber>()
        .map_err(|e| ChangeError::field(field, &e))
}

fn household(field: &str, s: &str) -> Result<HouseholdNumber, ChangeError> {
    s.parse::<HouseholdNumber>()
        .map_err(|e| ChangeError::field(field, &e))
}

fn addressees(field: &str, list: &[String]) -> Result<Vec<AddresseeNumber>, ChangeError> {
    let mut out: Vec<AddresseeNumber> = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let a = addressee(&format!("{field}[{i}]"), s)?;
        if out.contains(&a) {
            return Err(ChangeError::DuplicatePerson(a));
        }
        out.push(a);
    }
    if out.is_empty() {
        return Err(ChangeError::NoPersons);
    }
    Ok(out)
}

fn rel_addressees(list: &[MemberRelationship]) -> Result<Vec<AddresseeNumber>, ChangeError> {
    let ids: Vec<String> = list.iter().map(|m| m.addressee_number.clone()).collect();
    addressees("relationships", &ids)
}

fn relationships(
    list: &[MemberRelationship],
) -> Result<BTreeMap<AddresseeNumber, Relationship>, ChangeError> {
    let mut out = BTreeMap::new();
    for (i, m) in list.iter().enumerate() {
        let a = addressee(
            &format!("relationships[{i}].addressee_number"),
            &m.addressee_number,
        )?;
        let r = Relationship::parse(&m.relationship)
            .map_err(|e| ChangeError::field(format!("relationships[{i}].relationship"), &e))?;
        if out.insert(a.clone(), r).is_some() {
            return Err(ChangeError::DuplicatePerson(a));
        }
    }
    if out.is_empty() {
        return Err(ChangeError::NoPersons);
    }
    Ok(out)
}

fn date(
    field: &str,
    s: &str,
    policy: DatePolicy,
    ctx: &PlanContext<'_>,
) -> Result<DateValue, ChangeError> {
    if s.trim().is_empty() {
        return Err(ChangeError::Missing(field.to_string()));
    }
    DateValue::parse(s, ctx.eras, policy).map_err(|e| ChangeError::field(field, &e))
}

fn opt_date(
    field: &str,
    s: &Option<String>,
    policy: DatePolicy,
    ctx: &PlanContext<'_>,
) -> Result<Option<DateValue>, ChangeError> {
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => date(field, v, policy, ctx).map(Some),
    }
}

fn name(field: &str, s: &str) -> Result<PersonName, ChangeError> {
    PersonName::try_from(s.to_string()).map_err(|e| ChangeError::field(field, &e))
}

fn kana(field: &str, s: &Option<String>) -> Result<Option<Furigana>, ChangeError> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => Furigana::try_from(v.to_string())
            .map(Some)
            .map_err(|e| ChangeError::field(field, &e)),
    }
}

fn parse_opt<T: std::str::FromStr>(
    field: &str,
    s: &Option<String>,
) -> Result<Option<T>, ChangeError>
where
    T::Err: crate::error::Localized,
{
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<T>()
            .map(Some)
            .map_err(|e| ChangeError::field(field, &e)),
    }
}

fn text_opt(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

fn address(field: &str, a: &AddressInput) -> Result<Address, ChangeError> {
    if a.address.trim().is_empty() {
        return Err(ChangeError::Missing(format!("{field}.address")));
    }
    let out = Address {
        address: a.address.trim().to_string(),
        annex: text_opt(&a.annex),
        postal_code: parse_opt::<PostalCode>(&format!("{field}.postal_code"), &a.postal_code)?,
    };
    out.check()
        .map_err(|e| ChangeError::field(format!("{field}.address"), &e))?;
    Ok(out)
}

/// Validates `req` against `view` and computes the rows it appends.
/// Cancellations are planned by [`super::plan_cancellation`] instead.
pub fn plan(
    req: &ChangeRequest,
    view: &RegistryView,
    alloc: &Allocated,
    ctx: &PlanContext<'_>,
) -> Result<ChangePlan, ChangeError> {
    let reason = reason_of(&req.command);
    // j80: the 異動日 of 出生, 死亡 (and 失踪) may be non-calendar or unknown.
    let policy = match reason {
        ChangeReason::Birth | ChangeReason::Death => DatePolicy::AllowIrregular,
        _ => DatePolicy::CalendarOnly,
    };
    let effective_date = date("effective_date", &req.meta.effective_date, policy, ctx)?;
    // j480: only a 転出 may be dated after the processing day.
    let may_be_future = matches!(reason, ChangeReason::MoveOut | ChangeReason::MoveOutAbroad);
    if !may_be_future
        && let Some(d) = effective_date.as_calendar()
        && d > ctx.today
    {
        return Err(ChangeError::EffectiveDateInFuture(d.to_string()));
    }
    let filed_on = match opt_date(
        "filed_on",
        &req.meta.filed_on,
        DatePolicy::CalendarOnly,
        ctx,
    )? {
        Some(d) => {
            let d = d
                .as_calendar()
                .ok_or_else(|| ChangeError::Missing("filed_on".into()))?;
            if d > ctx.today {
                return Err(ChangeError::FiledInFuture(d.to_string()));
            }
            Some(d)
        }
        None => None,
    };
    let mut p = Planner {
        view,
        alloc,
        ctx,
        meta: &req.meta,
        reason,
        effective_date: effective_date.clone(),
        rows: BTreeMap::new(),
        notices: Vec::new(),
        next_addressee: 0,
    };
    p.run(&req.command)?;
    Ok(ChangePlan {
        reason,
        effective_date,
        filed_on,
        rows: p.rows.into_values().collect(),
        notices: p.notices,
    })
}

/// The 異動事由 a command records (j210).
pub fn reason_of(cmd: &ChangeCommand) -> ChangeReason {
    match cmd {
        ChangeCommand::MoveIn { .. } => ChangeReason::MoveIn,
        ChangeCommand::MoveInFromAbroad { .. } => ChangeReason::MoveInFromAbroad,
        ChangeCommand::Birth { .. } => ChangeReason::Birth,
        ChangeCommand::ExOfficioEntry { .. } => ChangeReason::ExOfficioEntry,
        ChangeCommand::MoveWithin { .. } => ChangeReason::MoveWithin,
        ChangeCommand::MoveOut { .. } => ChangeReason::MoveOut,
        ChangeCommand::MoveOutAbroad { .. } => ChangeReason::MoveOutAbroad,
        ChangeCommand::Death { .. } => ChangeReason::Death,
        ChangeCommand::HouseholdSplit { .. } => ChangeReason::HouseholdSplit,
        ChangeCommand::HouseholdMerge { .. } => ChangeReason::HouseholdMerge,
        ChangeCommand::HouseholdTransfer { .. } => ChangeReason::HouseholdTransfer,
        ChangeCommand::HeadChange { .. } => ChangeReason::HeadChange,
        ChangeCommand::ExOfficioCorrection { .. } => ChangeReason::ExOfficioCorrection,
        ChangeCommand::ClericalCorrection { .. } => ChangeReason::ClericalCorrection,
        ChangeCommand::ExOfficioRemoval { .. } => ChangeReason::ExOfficioRemoval,
        // The direction (増/減/修正) depends on the cancelled change.
        ChangeCommand::Cancel { .. } => ChangeReason::CancellationAmendment,
    }
}

struct Planner<'a> {
    view: &'a RegistryView,
    alloc: &'a Allocated,
    ctx: &'a PlanContext<'a>,
    meta: &'a ChangeMeta,
    reason: ChangeReason,
    effective_date: DateValue,
    /// New snapshots by person; a person appears once per change.
    rows: BTreeMap<AddresseeNumber, ResidentRecord>,
    notices: Vec<Notice>,
    next_addressee: usize,
}

impl Planner<'_> {
    /// The record as this change has made it so far.
    fn current(&self, a: &AddresseeNumber) -> Result<ResidentRecord, ChangeError> {
        match self.rows.get(a) {
            Some(r) => Ok(r.clone()),
            None => self.view.resident(a).cloned(),
        }
    }

    fn put(&mut self, r: ResidentRecord) {
        self.rows.insert(r.addressee_number.clone(), r);
    }

    fn new_household_number(&self) -> Result<HouseholdNumber, ChangeError> {
        self.alloc
            .household
            .clone()
            .ok_or_else(|| ChangeError::Missing("allocated household number".into()))
    }

    fn run(&mut self, cmd: &ChangeCommand) -> Result<(), ChangeError> {
        match cmd {
            ChangeCommand::MoveIn {
                persons,
                household,
                previous_address,
            }
            | ChangeCommand::MoveInFromAbroad {
                persons,
                household,
                previous_address,
            } => self.enter(persons, household, Some(previous_address)),
            ChangeCommand::Birth {
                person,
                household_number,
            } => self.enter(
                std::slice::from_ref(person),
                &HouseholdTarget::Join {
                    household_number: household_number.clone(),
                },
                None,
            ),
            ChangeCommand::ExOfficioEntry { person, household } => {
                self.enter(std::slice::from_ref(person), household, None)
            }
            ChangeCommand::MoveWithin {
                persons,
                address: a,
                household,
            } => self.move_within(persons, a, household.as_ref()),
            ChangeCommand::MoveOut {
                persons,
                destination,
            } => self.move_out(persons, destination, false),
            ChangeCommand::MoveOutAbroad {
                persons,
                destination,
            } => self.move_out(persons, destination, true),
            ChangeCommand::Death { person } => {
                let a = addressee("person", person)?;
                self.remove(&[a], ResidentStatus::Deceased, None)
            }
            ChangeCommand::ExOfficioRemoval { person } => {
                let a = addressee("person", person)?;
                self.remove(&[a], ResidentStatus::Removed, None)
            }
            ChangeCommand::HouseholdSplit { relationships: r } => self.split(r),
            ChangeCommand::HouseholdMerge {
                from_household,
                into_household,
                relationships: r,
            } => self.merge(from_household, into_household, r),
            ChangeCommand::HouseholdTransfer {
                into_household,
                relationships: r,
            } => self.transfer(into_household, r),
            ChangeCommand::HeadChange {
                household_number,
                new_head,
                relationships: r,
            } => self.head_change(household_number, new_head, r),
            ChangeCommand::ExOfficioCorrection { person, patch }
            | ChangeCommand::ClericalCorrection { person, patch } => self.correct(person, patch),
            ChangeCommand::Cancel { .. } => Err(ChangeError::KindMismatch(
                "cancellations are planned with plan_cancellation",
            )),
        }
    }

    // ---- entries: 転入, 国外転入, 出生, 職権記載 (j590, j750) ----

    fn enter(
        &mut self,
        persons: &[NewPerson],
        target: &HouseholdTarget,
        previous_address: Option<&String>,
    ) -> Result<(), ChangeError> {
        if persons.is_empty() {
            return Err(ChangeError::NoPersons);
        }
        if let Some(prev) = previous_address
            && prev.trim().is_empty()
        {
            return Err(ChangeError::Missing("previous_address".into()));
        }
        let target_number = match target {
            HouseholdTarget::New { .. } => self.new_household_number()?,
            HouseholdTarget::Join { household_number } => {
                household("household.household_number", household_number)?
            }
        };
        let mut new_records = Vec::with_capacity(persons.len());
        for (i, p) in persons.iter().enumerate() {
            new_records.push(self.new_person(&format!("persons[{i}]"), p, &target_number)?);
        }
        // One 個人番号 or 住民票コード per person, within the request too.
        for (i, r) in new_records.iter().enumerate() {
            for other in &new_records[..i] {
                if r.my_number.is_some() && r.my_number == other.my_number {
                    return Err(ChangeError::DuplicateIdentity(
                        "個人番号 (my number)",
                        other.addressee_number.clone(),
                    ));
                }
                if r.resident_code.is_some() && r.resident_code == other.resident_code {
                    return Err(ChangeError::DuplicateIdentity(
                        "住民票コード (resident code)",
                        other.addressee_number.clone(),
                    ));
                }
            }
        }
        let heads = new_records
            .iter()
            .filter(|r| r.relationship.is_head())
            .count();
        let (household_number, addr, head_name) = match target {
            HouseholdTarget::New { address: a } => {
                // j100 allows a household without a head, but a household formed
                // by a change names at most one.
                if heads > 1 {
                    return Err(ChangeError::HeadCount(heads));
                }
                let head_name = new_records
                    .iter()
                    .find(|r| r.relationship.is_head())
                    .map(|r| r.name.clone());
                (target_number, address("household.address", a)?, head_name)
            }
            HouseholdTarget::Join { .. } => {
                let h = target_number;
                let members = self.view.members(&h)?;
                let existing_head = members.iter().find(|m| m.relationship.is_head());
                if heads > 0 && existing_head.is_some() {
                    return Err(ChangeError::HouseholdHasHead(h));
                }
                let first = members
                    .first()
                    .ok_or_else(|| ChangeError::HouseholdNotFound(h.clone()))?;
                let head_name = existing_head.map(|m| m.name.clone()).or_else(|| {
                    new_records
                        .iter()
                        .find(|r| r.relationship.is_head())
                        .map(|r| r.name.clone())
                });
                let addr = first.address.clone();
                if heads > 0 {
                    // A newcomer becomes head of a headless household: every
                    // member's snapshot carries the head's name (j200).
                    for m in members {
                        let mut r = m.clone();
                        r.head_name = head_name.clone();
                        self.put(r);
                    }
                }
                (h, addr, head_name)
            }
        };
        for mut r in new_records {
            r.household_number = household_number.clone();
            r.address = addr.clone();
            r.head_name = head_name.clone();
            r.previous_address = previous_address.map(|s| s.trim().to_string());
            r.address_since = Some(self.effective_date.clone());
            if r.resident_since.is_none() {
                r.resident_since = Some(self.effective_date.clone());
            }
            self.put(r);
        }
        Ok(())
    }

    fn new_person(
        &mut self,
        field: &str,
        p: &NewPerson,
        household_number: &HouseholdNumber,
    ) -> Result<ResidentRecord, ChangeError> {
        let addressee_number = self
            .alloc
            .addressees
            .get(self.next_addressee)
            .cloned()
            .ok_or_else(|| ChangeError::Missing("allocated addressee number".into()))?;
        self.next_addressee += 1;
        let ctx = self.ctx;
        let foreign = match (&p.kind, &p.foreign) {
            (ResidentKind::Japanese, Some(_)) => {
                return Err(ChangeError::KindMismatch(
                    "foreign-resident items for a Japanese resident / 日本人住民に外国人住民の項目",
                ));
            }
            (ResidentKind::Foreign, None) => {
                return Err(ChangeError::Missing(format!("{field}.foreign")));
            }
            (ResidentKind::Foreign, Some(f)) => Some(self.foreign(&format!("{field}.foreign"), f)?),
            (ResidentKind::Japanese, None) => None,
        };
        let registered_domicile = match (text_opt(&p.domicile), text_opt(&p.domicile_head)) {
            (None, None) => None,
            (Some(domicile), Some(head)) => Some(RegisteredDomicile { domicile, head }),
            (Some(_), None) => return Err(ChangeError::Missing(format!("{field}.domicile_head"))),
            (None, Some(_)) => return Err(ChangeError::Missing(format!("{field}.domicile"))),
        };
        if registered_domicile.is_some() && p.kind == ResidentKind::Foreign {
            return Err(ChangeError::KindMismatch(
                "本籍 for a foreign resident / 外国人住民に本籍",
            ));
        }
        let birth_date = date(
            &format!("{field}.birth_date"),
            &p.birth_date,
            DatePolicy::AllowIrregular,
            ctx,
        )?;
        Ok(ResidentRecord {
            addressee_number,
            household_number: household_number.clone(),
            kind: p.kind,
            status: ResidentStatus::Resident,
            name: name(&format!("{field}.name"), &p.name)?,
            name_kana: kana(&format!("{field}.name_kana"), &p.name_kana)?,
            birth_date,
            sex: p.sex,
            relationship: Relationship::parse(&p.relationship)
                .map_err(|e| ChangeError::field(format!("{field}.relationship"), &e))?,
            head_name: None,
            registered_domicile,
            address: Address {
                address: String::new(),
                annex: None,
                postal_code: None,
            },
            address_since: None,
            resident_since: opt_date(
                &format!("{field}.resident_since"),
                &p.resident_since,
                DatePolicy::AllowIrregular,
                ctx,
            )?,
            previous_address: None,
            my_number: parse_opt(&format!("{field}.my_number"), &p.my_number)?,
            resident_code: parse_opt(&format!("{field}.resident_code"), &p.resident_code)?,
            foreign,
            removal: None,
        })
    }

    fn foreign(&self, field: &str, f: &ForeignInput) -> Result<ForeignResidentInfo, ChangeError> {
        let req = |v: &str, n: &str| -> Result<String, ChangeError> {
            let t = v.trim();
            if t.is_empty() {
                Err(ChangeError::Missing(format!("{field}.{n}")))
            } else {
                Ok(t.to_string())
            }
        };
        Ok(ForeignResidentInfo {
            alphabet_name: req(&f.alphabet_name, "alphabet_name")?,
            alias: match text_opt(&f.alias) {
                Some(a) => Some(name(&format!("{field}.alias"), &a)?),
                None => None,
            },
            alias_kana: kana(&format!("{field}.alias_kana"), &f.alias_kana)?,
            nationality: req(&f.nationality, "nationality")?,
            residence_status: req(&f.residence_status, "residence_status")?,
            period_of_stay: text_opt(&f.period_of_stay),
            stay_expires_on: opt_date(
                &format!("{field}.stay_expires_on"),
                &f.stay_expires_on,
                DatePolicy::CalendarOnly,
                self.ctx,
            )?,
            card_number: text_opt(&f.card_number),
        })
    }

    // ---- the head leaving a household (j490) ----

    /// Called after `leavers` have left household `h`: applies j490 to the
    /// members who remain.
    fn after_leaving(
        &mut self,
        h: &HouseholdNumber,
        leavers: &BTreeSet<AddresseeNumber>,
    ) -> Result<(), ChangeError> {
        let members = self.view.members(h)?;
        let head_left = members
            .iter()
            .any(|m| m.relationship.is_head() && leavers.contains(&m.addressee_number));
        if !head_left {
            return Ok(());
        }
        let remaining: Vec<AddresseeNumber> = members
            .iter()
            .filter(|m| !leavers.contains(&m.addressee_number))
            .map(|m| m.addressee_number.clone())
            .collect();
        match remaining.len() {
            0 => Ok(()),
            1 => {
                // j490: the single remaining member becomes head ex officio.
                let mut r = self.current(&remaining[0])?;
                r.relationship = Relationship::head();
                r.head_name = Some(r.name.clone());
                self.put(r);
                self.notices.push(Notice::HeadAssigned {
                    household_number: h.clone(),
                    addressee_number: remaining[0].clone(),
                });
                Ok(())
            }
            n if !self.meta.allow_headless_household => Err(ChangeError::HeadChangeRequired {
                household: h.clone(),
                remaining: n,
            }),
            _ => {
                for a in &remaining {
                    let mut r = self.current(a)?;
                    r.head_name = None;
                    self.put(r);
                }
                self.notices.push(Notice::HeadChangeRequested {
                    household_number: h.clone(),
                });
                Ok(())
            }
        }
    }

    /// Parses `persons`, checks they are residents of one household and
    /// returns them with that household.
    fn movers(
        &self,
        ids: &[AddresseeNumber],
    ) -> Result<(HouseholdNumber, Vec<ResidentRecord>), ChangeError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut hh: Option<HouseholdNumber> = None;
        for a in ids {
            let r = self.view.resident(a)?;
            match &hh {
                None => hh = Some(r.household_number.clone()),
                Some(h) if *h != r.household_number => return Err(ChangeError::MixedHouseholds),
                _ => {}
            }
            out.push(r.clone());
        }
        let h = hh.ok_or(ChangeError::NoPersons)?;
        Ok((h, out))
    }

    // ---- 転居 ----

    fn move_within(
        &mut self,
        persons: &[String],
        a: &AddressInput,
        target: Option<&MoveWithinHousehold>,
    ) -> Result<(), ChangeError> {
        let ids = addressees("persons", persons)?;
        let (from, movers) = self.movers(&ids)?;
        let new_address = address("address", a)?;
        // j560, j630: a 転居 stays in the municipality and changes the address.
        if let Some(m) = self.ctx.municipality
            && let super::locality::Locality::Outside(_) = m.locate(&new_address.address)
        {
            return Err(ChangeError::OutsideMunicipality {
                address: new_address.address.clone(),
                municipality: format!("{}{}", m.prefecture, m.name),
            });
        }
        if let Some(same) = movers.iter().find(|r| {
            r.address.address.trim() == new_address.address.trim()
                && r.address.annex.as_deref().map(str::trim).unwrap_or("")
                    == new_address.annex.as_deref().map(str::trim).unwrap_or("")
        }) {
            return Err(ChangeError::SameAddress(same.addressee_number.clone()));
        }
        let whole = self.view.members(&from)?.len() == movers.len();
        let leavers: BTreeSet<AddresseeNumber> = ids.iter().cloned().collect();
        match target {
            None => {
                if !whole {
                    return Err(ChangeError::Missing(
                        "household (part of a household moves)".into(),
                    ));
                }
                for mut r in movers {
                    r.address = new_address.clone();
                    r.address_since = Some(self.effective_date.clone());
                    self.put(r);
                }
            }
            Some(MoveWithinHousehold::New {
                relationships: rels,
            }) => {
                let rels = relationships(rels)?;
                let h = self.new_household_number()?;
                self.regroup(&movers, &rels, &h, None, Some(&new_address))?;
                if !whole {
                    self.after_leaving(&from, &leavers)?;
                }
            }
            Some(MoveWithinHousehold::Join {
                household_number,
                relationships: rels,
            }) => {
                let rels = relationships(rels)?;
                let into = household("household.household_number", household_number)?;
                if into == from {
                    return Err(ChangeError::SameHousehold(into));
                }
                let target_members = self.view.members(&into)?;
                let target_address = target_members
                    .first()
                    .map(|m| m.address.clone())
                    .ok_or_else(|| ChangeError::HouseholdNotFound(into.clone()))?;
                if target_address.address != new_address.address {
                    return Err(ChangeError::DifferentAddress(from.clone(), into.clone()));
                }
                let head = target_members
                    .iter()
                    .find(|m| m.relationship.is_head())
                    .map(|m| m.name.clone());
                self.regroup(&movers, &rels, &into, head, Some(&target_address))?;
                self.after_leaving(&from, &leavers)?;
            }
        }
        Ok(())
    }

    /// Moves `movers` into household `h` with the given 続柄. When `head` is
    /// None the new head must be among the movers.
    fn regroup(
        &mut self,
        movers: &[ResidentRecord],
        rels: &BTreeMap<AddresseeNumber, Relationship>,
        h: &HouseholdNumber,
        existing_head: Option<PersonName>,
        new_address: Option<&Address>,
    ) -> Result<(), ChangeError> {
        let from = movers
            .first()
            .map(|m| m.household_number.clone())
            .ok_or(ChangeError::NoPersons)?;
        for a in rels.keys() {
            if !movers.iter().any(|m| &m.addressee_number == a) {
                return Err(ChangeError::NotAMember(a.clone(), from.clone()));
            }
        }
        let heads: Vec<&ResidentRecord> = movers
            .iter()
            .filter(|m| rels.get(&m.addressee_number).is_some_and(|r| r.is_head()))
            .collect();
        let head_name = match &existing_head {
            Some(n) => {
                if let Some(h2) = heads.first() {
                    return Err(ChangeError::HouseholdHasHead(h2.household_number.clone()));
                }
                Some(n.clone())
            }
            None => match heads.as_slice() {
                [head] => Some(head.name.clone()),
                _ => return Err(ChangeError::HeadCount(heads.len())),
            },
        };
        for m in movers {
            let rel = rels
                .get(&m.addressee_number)
                .cloned()
                .ok_or_else(|| ChangeError::RelationshipMissing(m.addressee_number.clone()))?;
            let mut r = self.current(&m.addressee_number)?;
            r.household_number = h.clone();
            r.relationship = rel;
            r.head_name = head_name.clone();
            if let Some(a) = new_address {
                if r.address != *a {
                    r.address_since = Some(self.effective_date.clone());
                }
                r.address = a.clone();
            }
            self.put(r);
        }
        Ok(())
    }

    // ---- 転出, 国外転出, 死亡, 職権消除 ----

    fn move_out(
        &mut self,
        persons: &[String],
        destination: &AddressInput,
        abroad: bool,
    ) -> Result<(), ChangeError> {
        let ids = addressees("persons", persons)?;
        let d = address("destination", destination)?;
        // j650 (転出先入力), with j560/j630: a 転出 leaves the municipality.
        // A destination the text places in this municipality is a 転居, not
        // a 転出; one that names no municipality (j650 allows a bare town or
        // municipality name) cannot be judged and is taken as given.
        if let Some(m) = self.ctx.municipality
            && let super::locality::Locality::Inside = m.locate(&d.address)
        {
            return Err(ChangeError::InsideMunicipality {
                address: d.address.clone(),
                municipality: format!("{}{}", m.prefecture, m.name),
            });
        }
        let dest = Destination {
            address: d.address,
            annex: d.annex,
            postal_code: d.postal_code,
            abroad,
        };
        let status = ResidentStatus::MovedOut;
        self.remove(&ids, status, Some(dest))
    }

    fn remove(
        &mut self,
        ids: &[AddresseeNumber],
        status: ResidentStatus,
        destination: Option<Destination>,
    ) -> Result<(), ChangeError> {
        let (from, movers) = self.movers(ids)?;
        let leavers: BTreeSet<AddresseeNumber> = ids.iter().cloned().collect();
        self.after_leaving(&from, &leavers)?;
        for mut r in movers {
            r.status = status;
            r.removal = Some(Removal {
                reason: self.reason,
                date: self.effective_date.clone(),
                destination: destination.clone(),
            });
            self.put(r);
        }
        Ok(())
    }

    // ---- 世帯分離, 世帯合併, 世帯変更, 世帯主変更 (j720, j730) ----

    fn split(&mut self, rels: &[MemberRelationship]) -> Result<(), ChangeError> {
        let rels = relationships(rels)?;
        let ids: Vec<AddresseeNumber> = rels.keys().cloned().collect();
        let (from, movers) = self.movers(&ids)?;
        if self.view.members(&from)?.len() == movers.len() {
            return Err(ChangeError::WholeHousehold(from));
        }
        let h = self.new_household_number()?;
        self.regroup(&movers, &rels, &h, None, None)?;
        self.after_leaving(&from, &ids.into_iter().collect())
    }

    fn merge(
        &mut self,
        from: &str,
        into: &str,
        rels: &[MemberRelationship],
    ) -> Result<(), ChangeError> {
        let from = household("from_household", from)?;
        let into = household("into_household", into)?;
        if from == into {
            return Err(ChangeError::SameHousehold(from));
        }
        let rels = relationships(rels)?;
        let movers: Vec<ResidentRecord> = self.view.members(&from)?.into_iter().cloned().collect();
        let head = self.joinable_head(&movers, &from, &into)?;
        self.regroup(&movers, &rels, &into, Some(head), None)
    }

    /// The head's name of household `into`, which `movers` (from household
    /// `from`) join without moving: it must be at their address and have a head.
    fn joinable_head(
        &self,
        movers: &[ResidentRecord],
        from: &HouseholdNumber,
        into: &HouseholdNumber,
    ) -> Result<PersonName, ChangeError> {
        let target = self.view.members(into)?;
        same_address(movers, &target, from, into)?;
        target
            .iter()
            .find(|m| m.relationship.is_head())
            .map(|m| m.name.clone())
            .ok_or_else(|| ChangeError::Missing("head of into_household".into()))
    }

    fn transfer(&mut self, into: &str, rels: &[MemberRelationship]) -> Result<(), ChangeError> {
        let into = household("into_household", into)?;
        let rels = relationships(rels)?;
        let ids: Vec<AddresseeNumber> = rels.keys().cloned().collect();
        let (from, movers) = self.movers(&ids)?;
        if from == into {
            return Err(ChangeError::SameHousehold(into));
        }
        if self.view.members(&from)?.len() == movers.len() {
            return Err(ChangeError::WholeHousehold(from));
        }
        let head = self.joinable_head(&movers, &from, &into)?;
        self.regroup(&movers, &rels, &into, Some(head), None)?;
        self.after_leaving(&from, &ids.into_iter().collect())
    }

    fn head_change(
        &mut self,
        h: &str,
        new_head: &str,
        rels: &[MemberRelationship],
    ) -> Result<(), ChangeError> {
        let h = household("household_number", h)?;
        let new_head = addressee("new_head", new_head)?;
        let rels = if rels.is_empty() {
            BTreeMap::new()
        } else {
            relationships(rels)?
        };
        let members: Vec<ResidentRecord> = self.view.members(&h)?.into_iter().cloned().collect();
        let head_record = members
            .iter()
            .find(|m| m.addressee_number == new_head)
            .ok_or_else(|| ChangeError::NotAMember(new_head.clone(), h.clone()))?;
        if head_record.relationship.is_head() {
            return Err(ChangeError::HouseholdHasHead(h));
        }
        for a in rels.keys() {
            if !members.iter().any(|m| &m.addressee_number == a) {
                return Err(ChangeError::NotAMember(a.clone(), h.clone()));
            }
        }
        let head_name = head_record.name.clone();
        for m in &members {
            let mut r = m.clone();
            if m.addressee_number == new_head {
                r.relationship = Relationship::head();
            } else {
                // j730: every other member gets a 続柄 to the new head.
                r.relationship = rels
                    .get(&m.addressee_number)
                    .cloned()
                    .ok_or_else(|| ChangeError::RelationshipMissing(m.addressee_number.clone()))?;
                if r.relationship.is_head() {
                    return Err(ChangeError::HeadCount(2));
                }
            }
            r.head_name = Some(head_name.clone());
            self.put(r);
        }
        Ok(())
    }

    // ---- 職権修正, 誤記修正 ----

    fn correct(&mut self, person: &str, patch: &RecordPatch) -> Result<(), ChangeError> {
        let a = addressee("person", person)?;
        // A correction may also fix the record of a person who is no longer a
        // resident (a 除票), so it starts from the person's record whatever
        // the status.
        let before = self.view.person(&a)?.clone();
        let mut r = before.clone();
        let ctx = self.ctx;
        if let Some(v) = &patch.name {
            r.name = name("patch.name", v)?;
        }
        if let Some(v) = &patch.name_kana {
            r.name_kana = kana("patch.name_kana", &Some(v.clone()))?;
        }
        if let Some(v) = &patch.birth_date {
            r.birth_date = date("patch.birth_date", v, DatePolicy::AllowIrregular, ctx)?;
        }
        if let Some(v) = patch.sex {
            r.sex = v;
        }
        if let Some(v) = &patch.relationship {
            let rel =
                Relationship::parse(v).map_err(|e| ChangeError::field("patch.relationship", &e))?;
            if rel.is_head() != r.relationship.is_head() {
                return Err(ChangeError::KindMismatch(
                    "世帯主 is changed with a head change / 世帯主は世帯主変更で変更してください",
                ));
            }
            r.relationship = rel;
        }
        if patch.domicile.is_some() || patch.domicile_head.is_some() {
            if r.kind == ResidentKind::Foreign {
                return Err(ChangeError::KindMismatch(
                    "本籍 for a foreign resident / 外国人住民に本籍",
                ));
            }
            let cur = r.registered_domicile.clone();
            let domicile = patch
                .domicile
                .as_ref()
                .map(|s| s.trim().to_string())
                .or(cur.as_ref().map(|c| c.domicile.clone()))
                .unwrap_or_default();
            let head = patch
                .domicile_head
                .as_ref()
                .map(|s| s.trim().to_string())
                .or(cur.as_ref().map(|c| c.head.clone()))
                .unwrap_or_default();
            r.registered_domicile = match (domicile.is_empty(), head.is_empty()) {
                (true, true) => None,
                (false, false) => Some(RegisteredDomicile { domicile, head }),
                (true, false) => return Err(ChangeError::Missing("patch.domicile".into())),
                (false, true) => return Err(ChangeError::Missing("patch.domicile_head".into())),
            };
        }
        if let Some(v) = &patch.address_annex {
            r.address.annex = text_opt(&Some(v.clone()));
        }
        if let Some(v) = &patch.postal_code {
            r.address.postal_code = parse_opt("patch.postal_code", &Some(v.clone()))?;
        }
        if let Some(v) = &patch.my_number {
            r.my_number = parse_opt("patch.my_number", &Some(v.clone()))?;
        }
        if let Some(v) = &patch.resident_code {
            r.resident_code = parse_opt("patch.resident_code", &Some(v.clone()))?;
        }
        if let Some(v) = &patch.address_since {
            r.address_since = opt_date(
                "patch.address_since",
                &Some(v.clone()),
                DatePolicy::AllowIrregular,
                ctx,
            )?;
        }
        if let Some(v) = &patch.resident_since {
            r.resident_since = opt_date(
                "patch.resident_since",
                &Some(v.clone()),
                DatePolicy::AllowIrregular,
                ctx,
            )?;
        }
        if r == before {
            return Err(ChangeError::NothingToCorrect);
        }
        let name_changed = r.name != before.name;
        let is_head = r.relationship.is_head() && r.status.is_resident();
        if name_changed && is_head {
            r.head_name = Some(r.name.clone());
        }
        let hh = r.household_number.clone();
        let new_name = r.name.clone();
        self.rows.insert(a.clone(), r);
        // The head's name is household-common data kept in every member's row.
        if name_changed && is_head {
            let others: Vec<ResidentRecord> = self
                .view
                .members(&hh)?
                .into_iter()
                .filter(|m| m.addressee_number != a)
                .cloned()
                .collect();
            for mut m in others {
                m.head_name = Some(new_name.clone());
                self.put(m);
            }
        }
        Ok(())
    }
}

fn same_address(
    movers: &[ResidentRecord],
    target: &[&ResidentRecord],
    from: &HouseholdNumber,
    into: &HouseholdNumber,
) -> Result<(), ChangeError> {
    let a = movers.first().map(|m| &m.address.address);
    let b = target.first().map(|m| &m.address.address);
    if a != b {
        return Err(ChangeError::DifferentAddress(from.clone(), into.clone()));
    }
    Ok(())
}
