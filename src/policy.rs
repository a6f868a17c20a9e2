//! The one place that says who may read and write what.
//!
//! Every server function and every shape asks this module; SQL filters are derived from
//! [`Scope`] (the server turns each variant into a fixed where clause), and the predicates here
//! are the reference those filters are tested against.
use crate::{ApprovalLevel, ApprovalStatus, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The turn columns a vendor's synced shape carries: the work, not its money (the scope amount,
/// the approved amount), the approval state or the managers (the same line
/// `sees_turn_financials` draws for read models).
pub const VENDOR_TURN_COLUMNS: &[&str] = &[
    "id",
    "turn_id",
    "property_id",
    "stage_id",
    "wo_number",
    "move_out_date",
    "vendor_id",
    "expected_completion_date",
    "turn_completion_date",
    "vendor_accepted_at",
    "qc_passed_at",
    "qc_failures",
    "is_active",
    "version",
    "updated_at",
];

/// The line item columns a vendor's synced shape carries: the work, not what it costs.
pub const VENDOR_LINE_ITEM_COLUMNS: &[&str] = &[
    "id",
    "turn_id",
    "position",
    "category",
    "description",
    "quantity",
    "vendor_id",
    "turn_vendor_id",
    "turn_is_active",
    "turn_completion_date",
    "version",
    "updated_at",
];

/// The authenticated user a request acts for (from the session, never from the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: Uuid,
    pub role: Role,
    /// Set for VENDOR users: the vendor company they work for.
    pub vendor_id: Option<Uuid>,
}

/// What the policy needs to know about a property.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PropertyFacts {
    pub property_manager_id: Option<Uuid>,
    pub sr_property_manager_id: Option<Uuid>,
}

/// What the policy needs to know about a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TurnFacts {
    pub property: PropertyFacts,
    pub vendor_id: Option<Uuid>,
    pub approval_status: ApprovalStatus,
}

/// What the policy needs to know about a user a property would be assigned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssigneeFacts {
    pub user_id: Uuid,
    pub role: Role,
    pub is_active: bool,
    /// Whether the user manages a property the acting senior PM oversees (their team).
    pub in_actors_team: bool,
}

/// Which rows a role reads. The server maps each variant to one fixed SQL filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything (admins, inspectors, read-only users).
    All,
    /// Properties whose PM is this user, and their turns.
    ManagedBy(Uuid),
    /// Properties whose PM or senior PM is this user, and their turns.
    OverseenBy(Uuid),
    /// Turns assigned to this vendor company, and the properties of those turns.
    Vendor(Uuid),
    /// Turns waiting for this approval level, and the properties of those turns.
    Awaiting(ApprovalLevel),
    /// Nothing (e.g. a vendor user with no vendor).
    Nothing,
}

impl Actor {
    /// The read scope of this actor's role.
    pub fn scope(&self) -> Scope {
        match self.role {
            Role::SuperAdmin | Role::Admin | Role::Inspector | Role::User => Scope::All,
            Role::PropertyManager => Scope::ManagedBy(self.user_id),
            Role::SrPropertyManager => Scope::OverseenBy(self.user_id),
            Role::Vendor => self.vendor_id.map_or(Scope::Nothing, Scope::Vendor),
            Role::DfoApprover => Scope::Awaiting(ApprovalLevel::Dfo),
            Role::HoApprover => Scope::Awaiting(ApprovalLevel::Ho),
        }
    }

    pub fn can_read_turn(&self, turn: &TurnFacts) -> bool {
        match self.scope() {
            Scope::All => true,
            Scope::ManagedBy(_) | Scope::OverseenBy(_) => self.manages(&turn.property),
            Scope::Vendor(vendor) => turn.vendor_id == Some(vendor),
            Scope::Awaiting(level) => turn.approval_status == level.needed_status(),
            Scope::Nothing => false,
        }
    }

    /// A property is readable when the role's scope covers it directly or, for vendors and
    /// approvers, through one of its turns they may read (they need the address to do the work).
    pub fn can_read_property(&self, property: &PropertyFacts, turns: &[TurnFacts]) -> bool {
        match self.scope() {
            Scope::All => true,
            Scope::ManagedBy(_) | Scope::OverseenBy(_) => self.manages(property),
            Scope::Vendor(_) | Scope::Awaiting(_) => turns.iter().any(|t| self.can_read_turn(t)),
            Scope::Nothing => false,
        }
    }

    /// Admins and (senior) property managers: they open, scope and move turns.
    /// The dashboard's numbers cover a portfolio: the whole of it (admins, inspectors, read-only
    /// users) or a manager's. A vendor's jobs or an approver's queue are not one.
    pub fn sees_dashboard(&self) -> bool {
        matches!(
            self.scope(),
            Scope::All | Scope::ManagedBy(_) | Scope::OverseenBy(_)
        )
    }

    pub fn is_manager(&self) -> bool {
        self.role.is_admin() || matches!(self.role, Role::PropertyManager | Role::SrPropertyManager)
    }

    /// Create properties (admins and managers; a PM's new property is assigned to that PM).
    pub fn can_create_property(&self) -> bool {
        self.is_manager()
    }

    /// Edit a property, or open and edit turns on it (scope, amount, vendor, stage).
    pub fn can_manage_property(&self, property: &PropertyFacts) -> bool {
        self.role.is_admin() || self.manages(property)
    }

    /// Make `to` the property manager of a property this actor manages: only an active property
    /// manager; a senior PM only within their own team (or themselves), an admin anyone.
    pub fn can_assign_property_to(&self, to: &AssigneeFacts) -> bool {
        let is_pm = to.is_active && to.role == Role::PropertyManager;
        match self.role {
            r if r.is_admin() => is_pm,
            Role::SrPropertyManager => {
                (is_pm && to.in_actors_team)
                    || (to.user_id == self.user_id && to.is_active && to.role == self.role)
            }
            Role::PropertyManager => to.user_id == self.user_id && to.is_active,
            _ => false,
        }
    }

    /// A vendor's contact details (email, phone) are for the people who hire vendors.
    pub fn sees_vendor_contacts(&self) -> bool {
        self.is_manager()
    }

    pub fn can_manage_turn(&self, turn: &TurnFacts) -> bool {
        self.can_manage_property(&turn.property)
    }

    /// Notes and photos on a turn: from its managers, the vendor doing it, and inspectors (and
    /// admins). Approvers and read-only users look; they do not write in the field.
    pub fn can_add_field_notes(&self, turn: &TurnFacts) -> bool {
        self.can_manage_turn(turn)
            || self.can_record_progress(turn)
            || (self.can_inspect() && self.can_read_turn(turn))
    }

    /// Vendors record progress and completion on turns assigned to their company.
    pub fn can_record_progress(&self, turn: &TurnFacts) -> bool {
        self.role.is_admin()
            || (self.role == Role::Vendor
                && self.vendor_id.is_some()
                && turn.vendor_id == self.vendor_id)
    }

    /// Record QC inspections (inspectors, and admins).
    pub fn can_inspect(&self) -> bool {
        self.role.is_admin() || self.role == Role::Inspector
    }

    /// Approve or reject a turn: the approver of the level it waits for (or an admin).
    pub fn can_decide_approval(&self, turn: &TurnFacts) -> bool {
        let Some(level) = turn.approval_status.awaiting() else {
            return false;
        };
        self.role.is_admin()
            || matches!(
                (self.role, level),
                (Role::DfoApprover, ApprovalLevel::Dfo) | (Role::HoApprover, ApprovalLevel::Ho)
            )
    }

    /// Whether this role sees a turn's money and approval details. Vendors see the work, no
    /// money: what the operator pays them is agreed outside the app, not on a shared phone.
    pub fn sees_turn_financials(&self) -> bool {
        self.role != Role::Vendor
    }

    fn manages(&self, property: &PropertyFacts) -> bool {
        let me = Some(self.user_id);
        match self.role {
            Role::PropertyManager => property.property_manager_id == me,
            Role::SrPropertyManager => {
                property.property_manager_id == me || property.sr_property_manager_id == me
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_go_only_to_active_property_managers_of_the_seniors_team() {
        let w = world();
        let to = |user_id, role, in_actors_team| AssigneeFacts {
            user_id,
            role,
            is_active: true,
            in_actors_team,
        };
        let senior = actor(&w, Role::SrPropertyManager);
        assert!(senior.can_assign_property_to(&to(w.pm, Role::PropertyManager, true)));
        assert!(!senior.can_assign_property_to(&to(w.other_pm, Role::PropertyManager, false)));
        for role in [Role::Vendor, Role::DfoApprover, Role::Admin, Role::User] {
            assert!(
                !senior.can_assign_property_to(&to(w.pm, role, true)),
                "{role:?}"
            );
        }
        let inactive = AssigneeFacts {
            is_active: false,
            ..to(w.pm, Role::PropertyManager, true)
        };
        assert!(!senior.can_assign_property_to(&inactive));
        let admin = actor(&w, Role::Admin);
        assert!(admin.can_assign_property_to(&to(w.other_pm, Role::PropertyManager, false)));
        assert!(!admin.can_assign_property_to(&to(w.vendor, Role::Vendor, false)));
        let pm = actor(&w, Role::PropertyManager);
        assert!(pm.can_assign_property_to(&to(w.pm, Role::PropertyManager, false)));
        assert!(!pm.can_assign_property_to(&to(w.other_pm, Role::PropertyManager, true)));
    }

    struct World {
        pm: Uuid,
        other_pm: Uuid,
        senior: Uuid,
        vendor: Uuid,
        other_vendor: Uuid,
    }

    fn world() -> World {
        World {
            pm: Uuid::new_v4(),
            other_pm: Uuid::new_v4(),
            senior: Uuid::new_v4(),
            vendor: Uuid::new_v4(),
            other_vendor: Uuid::new_v4(),
        }
    }

    fn actor(w: &World, role: Role) -> Actor {
        let user_id = match role {
            Role::PropertyManager => w.pm,
            Role::SrPropertyManager => w.senior,
            _ => Uuid::new_v4(),
        };
        let vendor_id = (role == Role::Vendor).then_some(w.vendor);
        Actor {
            user_id,
            role,
            vendor_id,
        }
    }

    /// Kinds of rows: own property (PM = pm, senior = senior), another PM's property under
    /// another senior, turns on each with each vendor and approval status.
    fn own_property(w: &World) -> PropertyFacts {
        PropertyFacts {
            property_manager_id: Some(w.pm),
            sr_property_manager_id: Some(w.senior),
        }
    }
    fn foreign_property(w: &World) -> PropertyFacts {
        PropertyFacts {
            property_manager_id: Some(w.other_pm),
            sr_property_manager_id: None,
        }
    }
    fn turn(p: PropertyFacts, vendor: Option<Uuid>, s: ApprovalStatus) -> TurnFacts {
        TurnFacts {
            property: p,
            vendor_id: vendor,
            approval_status: s,
        }
    }

    #[test]
    fn every_role_reads_exactly_its_scope() {
        use ApprovalStatus::*;
        let w = world();
        let own = own_property(&w);
        let foreign = foreign_property(&w);
        // (turn, readable by: PM, SR, Vendor, DFO, HO)
        let cases = [
            (
                turn(own, Some(w.vendor), Pending),
                [true, true, true, false, false],
            ),
            (
                turn(own, Some(w.other_vendor), DfoApprovalNeeded),
                [true, true, false, true, false],
            ),
            (
                turn(foreign, Some(w.vendor), HoApprovalNeeded),
                [false, false, true, false, true],
            ),
            (
                turn(foreign, None, DfoApproved),
                [false, false, false, false, false],
            ),
            (
                turn(foreign, Some(w.other_vendor), Rejected),
                [false, false, false, false, false],
            ),
        ];
        for role in Role::ALL {
            let a = actor(&w, role);
            for (t, expected) in &cases {
                let want = match role {
                    Role::PropertyManager => expected[0],
                    Role::SrPropertyManager => expected[1],
                    Role::Vendor => expected[2],
                    Role::DfoApprover => expected[3],
                    Role::HoApprover => expected[4],
                    Role::SuperAdmin | Role::Admin | Role::Inspector | Role::User => true,
                };
                assert_eq!(a.can_read_turn(t), want, "{role} reading {t:?}");
            }
            // Properties: directly for managers, through a readable turn for the others.
            let own_turns = [cases[0].0, cases[1].0];
            let foreign_turns = [cases[2].0, cases[3].0, cases[4].0];
            let (own_ok, foreign_ok) = match role {
                Role::PropertyManager | Role::SrPropertyManager => (true, false),
                Role::Vendor => (true, true),
                Role::DfoApprover => (true, false),
                Role::HoApprover => (false, true),
                _ => (true, true),
            };
            assert_eq!(
                a.can_read_property(&own, &own_turns),
                own_ok,
                "{role} own property"
            );
            assert_eq!(
                a.can_read_property(&foreign, &foreign_turns),
                foreign_ok,
                "{role} foreign property"
            );
            assert_eq!(a.can_read_property(&foreign, &[]), a.scope() == Scope::All);
        }
    }

    #[test]
    fn senior_pm_sees_properties_they_oversee_but_a_pm_only_their_own() {
        let w = world();
        let overseen = PropertyFacts {
            property_manager_id: Some(w.other_pm),
            sr_property_manager_id: Some(w.senior),
        };
        assert!(actor(&w, Role::SrPropertyManager).can_read_property(&overseen, &[]));
        assert!(!actor(&w, Role::PropertyManager).can_read_property(&overseen, &[]));
    }

    #[test]
    fn every_role_writes_exactly_its_share() {
        use ApprovalStatus::*;
        let w = world();
        let own = turn(own_property(&w), Some(w.vendor), DfoApprovalNeeded);
        let foreign = turn(foreign_property(&w), Some(w.other_vendor), HoApprovalNeeded);
        for role in Role::ALL {
            let a = actor(&w, role);
            let admin = role.is_admin();
            let manager = matches!(role, Role::PropertyManager | Role::SrPropertyManager);
            assert_eq!(a.can_create_property(), admin || manager, "{role} create");
            assert_eq!(
                a.can_manage_turn(&own),
                admin || manager,
                "{role} manage own"
            );
            assert_eq!(a.can_manage_turn(&foreign), admin, "{role} manage foreign");
            assert_eq!(
                a.can_record_progress(&own),
                admin || role == Role::Vendor,
                "{role}"
            );
            assert_eq!(
                a.can_record_progress(&foreign),
                admin,
                "{role} progress foreign"
            );
            assert_eq!(
                a.can_decide_approval(&own),
                admin || role == Role::DfoApprover
            );
            assert_eq!(
                a.can_decide_approval(&foreign),
                admin || role == Role::HoApprover
            );
            assert_eq!(a.sees_turn_financials(), role != Role::Vendor);
        }
        let settled = turn(own_property(&w), None, HoApproved);
        assert!(!actor(&w, Role::Admin).can_decide_approval(&settled));
    }

    #[test]
    fn a_vendor_user_without_a_vendor_sees_nothing() {
        let a = Actor {
            user_id: Uuid::new_v4(),
            role: Role::Vendor,
            vendor_id: None,
        };
        let t = turn(PropertyFacts::default(), None, ApprovalStatus::Pending);
        assert_eq!(a.scope(), Scope::Nothing);
        assert!(!a.can_read_turn(&t));
        assert!(!a.can_record_progress(&t));
    }
}
