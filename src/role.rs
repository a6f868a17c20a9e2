use serde::{Deserialize, Serialize};
use std::fmt;

/// Who a user is in the business; the policy module decides what each may read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[cfg_attr(feature = "ssr", derive(sqlx::Type))]
#[cfg_attr(
    feature = "ssr",
    sqlx(type_name = "user_role", rename_all = "SCREAMING_SNAKE_CASE")
)]
pub enum Role {
    SuperAdmin,
    Admin,
    PropertyManager,
    SrPropertyManager,
    Vendor,
    Inspector,
    DfoApprover,
    HoApprover,
    User,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::SuperAdmin,
        Role::Admin,
        Role::PropertyManager,
        Role::SrPropertyManager,
        Role::Vendor,
        Role::Inspector,
        Role::DfoApprover,
        Role::HoApprover,
        Role::User,
    ];

    /// The database and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "SUPER_ADMIN",
            Role::Admin => "ADMIN",
            Role::PropertyManager => "PROPERTY_MANAGER",
            Role::SrPropertyManager => "SR_PROPERTY_MANAGER",
            Role::Vendor => "VENDOR",
            Role::Inspector => "INSPECTOR",
            Role::DfoApprover => "DFO_APPROVER",
            Role::HoApprover => "HO_APPROVER",
            Role::User => "USER",
        }
    }

    /// What people call the role on screen.
    pub fn label(self) -> &'static str {
        match self {
            Role::SuperAdmin => "Super admin",
            Role::Admin => "Admin",
            Role::PropertyManager => "Property manager",
            Role::SrPropertyManager => "Senior property manager",
            Role::Vendor => "Vendor",
            Role::Inspector => "Inspector",
            Role::DfoApprover => "DFO approver",
            Role::HoApprover => "Head-office approver",
            Role::User => "Read-only user",
        }
    }

    pub fn is_admin(self) -> bool {
        matches!(self, Role::SuperAdmin | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spelling_matches_the_database_enum() {
        for role in Role::ALL {
            let json = serde_json::to_string(&role).expect("serialize");
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            let back: Role = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, role);
        }
    }
}
