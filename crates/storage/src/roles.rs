//! Checks that the runtime PostgreSQL role cannot bypass row-level security, neither itself nor
//! through a role it is a member of.
//!
//! PostgreSQL docs, "Row Security Policies": superusers and `BYPASSRLS` roles always bypass RLS,
//! and table owners bypass it unless the table is `FORCE`d (and may `ALTER TABLE … DISABLE` or
//! `NO FORCE ROW LEVEL SECURITY` regardless). PostgreSQL docs, "Role Membership": a member of a
//! role uses that role's privileges, ownership included, directly (`INHERIT`) or after
//! `SET ROLE`, which also takes on its `SUPERUSER` and `BYPASSRLS` attributes; membership is
//! transitive. So the runtime role must be none of these, and must be a member of none of them
//! through any chain of grants.

use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult, Statement};

use crate::{Backend, Db, StorageError};

/// The `NOLOGIN` group role that migrations grant table privileges to. The login role the server
/// uses is made a member of it (see `deploy/postgres/bootstrap-roles.sql`).
pub const RUNTIME_GROUP_ROLE: &str = "rampart_runtime";

/// What the runtime connection is allowed to do, as read from the live catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReport {
    pub role: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    pub owned_relations: i64,
    /// Every other role `role` is a member of, directly or through a chain of grants (for a
    /// safe runtime role: `rampart_runtime`). Empty for a superuser, which is a member of all.
    pub memberships: Vec<RoleMembership>,
}

impl RoleReport {
    /// True when neither the role nor any role it is a member of can bypass RLS.
    pub fn is_safe(&self) -> bool {
        !self.superuser
            && !self.bypass_rls
            && self.owned_relations == 0
            && self.memberships.iter().all(RoleMembership::is_safe)
    }
}

/// A role the runtime role is a member of, with what that membership gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMembership {
    pub role: String,
    /// The role granted to the runtime role directly through which `role` is reached; `None`
    /// when `role` itself is granted directly.
    pub via: Option<String>,
    pub superuser: bool,
    pub bypass_rls: bool,
    pub owned_relations: i64,
}

impl RoleMembership {
    /// True when `role` can neither bypass RLS nor alter a table's policies.
    pub fn is_safe(&self) -> bool {
        !self.superuser && !self.bypass_rls && self.owned_relations == 0
    }

    /// Why this membership is unsafe, or `None`.
    fn problem(&self) -> Option<String> {
        let mut what = Vec::new();
        if self.superuser {
            what.push("is a superuser".to_owned());
        }
        if self.bypass_rls {
            what.push("has BYPASSRLS".to_owned());
        }
        if self.owned_relations > 0 {
            what.push(format!("owns {} relation(s)", self.owned_relations));
        }
        if what.is_empty() {
            return None;
        }
        let via = self.via.as_ref().map(|v| format!(" (through its membership of `{v}`)")).unwrap_or_default();
        Some(format!("it is a member of `{}`{via}, which {}", self.role, what.join(" and ")))
    }
}

/// One row per role `current_user` is a member of (`pg_has_role(…, 'MEMBER')`: directly or
/// through any chain, whether the grant is usable by `INHERIT` or by `SET ROLE`), itself first.
/// A superuser counts as a member of every role, so for one only its own row is read: it is
/// refused for being a superuser. `granted` walks `pg_auth_members` to name, for each role, the
/// direct grant that leads to it (preferring the role itself when granted directly); `UNION`
/// keeps the walk finite even on a cycle. Relations in system schemas are not counted.
const ROLE_QUERY: &str = "WITH RECURSIVE me AS (
    SELECT oid, rolsuper FROM pg_roles WHERE rolname = current_user
), granted (roleid, via) AS (
    SELECT m.roleid, m.roleid FROM pg_auth_members m JOIN me ON m.member = me.oid
  UNION
    SELECT m.roleid, g.via FROM granted g JOIN pg_auth_members m ON m.member = g.roleid
), held AS (
    SELECT r.oid, r.rolname, r.rolsuper, r.rolbypassrls, r.oid = me.oid AS is_self
      FROM pg_roles r CROSS JOIN me
     WHERE r.oid = me.oid OR (NOT me.rolsuper AND pg_has_role(me.oid, r.oid, 'MEMBER'))
)
SELECT h.rolname::text AS role, h.is_self, h.rolsuper AS superuser, h.rolbypassrls AS bypass_rls,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relowner = h.oid
           AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%') AS owned_relations,
       (SELECT NULLIF(v.rolname, h.rolname)::text FROM granted g JOIN pg_roles v ON v.oid = g.via
         WHERE g.roleid = h.oid ORDER BY g.via = h.oid DESC, v.rolname LIMIT 1) AS via
  FROM held h
 ORDER BY h.is_self DESC, h.rolname";

/// Reads the runtime role's attributes and memberships in one query and refuses a role that
/// could bypass RLS itself or through a role it is a member of. SQLite has no roles: it returns
/// `Ok(None)`.
pub async fn check_runtime_role(db: &Db) -> Result<Option<RoleReport>, StorageError> {
    if db.backend() != Backend::Postgres {
        return Ok(None);
    }
    let rows = db.conn().query_all(Statement::from_string(DatabaseBackend::Postgres, ROLE_QUERY)).await?;
    let mut own = None;
    let mut memberships = Vec::new();
    for row in &rows {
        let membership = read_membership(row)?;
        if row.try_get::<bool>("", "is_self")? {
            own = Some(membership);
        } else {
            memberships.push(membership);
        }
    }
    let own = own.ok_or_else(|| StorageError::UnsafeRuntimeRole {
        role: "?".into(),
        reason: "current_user not found in pg_roles".into(),
    })?;
    let report = RoleReport {
        role: own.role,
        superuser: own.superuser,
        bypass_rls: own.bypass_rls,
        owned_relations: own.owned_relations,
        memberships,
    };
    let mut reasons = Vec::new();
    if report.superuser {
        reasons.push("it is a superuser".to_owned());
    }
    if report.bypass_rls {
        reasons.push("it has BYPASSRLS".to_owned());
    }
    if report.owned_relations > 0 {
        reasons.push(format!("it owns {} relation(s)", report.owned_relations));
    }
    reasons.extend(report.memberships.iter().filter_map(RoleMembership::problem));
    if !reasons.is_empty() {
        return Err(StorageError::UnsafeRuntimeRole {
            role: report.role,
            reason: format!(
                "{}; connect the server as a NOSUPERUSER NOBYPASSRLS role that owns nothing and is a member of `{RUNTIME_GROUP_ROLE}` and of no role that is a superuser, has BYPASSRLS or owns relations (deploy/postgres/bootstrap-roles.sql)",
                reasons.join("; ")
            ),
        });
    }
    Ok(Some(report))
}

fn read_membership(row: &QueryResult) -> Result<RoleMembership, StorageError> {
    Ok(RoleMembership {
        role: row.try_get("", "role")?,
        via: row.try_get("", "via")?,
        superuser: row.try_get("", "superuser")?,
        bypass_rls: row.try_get("", "bypass_rls")?,
        owned_relations: row.try_get("", "owned_relations")?,
    })
}
