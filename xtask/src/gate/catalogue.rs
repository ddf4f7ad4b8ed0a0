//! Row-level security and secrets at rest, read from the live catalogue of a throwaway database
//! built from the migrations exactly as production builds it: the bootstrap roles script, then
//! every migration as the owner role.
//!
//! PostgreSQL docs, "Row Security Policies" (ddl-rowsecurity): table owners bypass RLS unless the
//! table is `FORCE`d, superusers and `BYPASSRLS` roles always bypass it, a command with no
//! permissive policy sees no row. "Writing SECURITY DEFINER Functions Safely" (sql-createfunction):
//! pin `search_path`, with `pg_temp` last.

use std::path::Path;

use anyhow::Context as _;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, Statement};

use super::{config_line, read_reasons, Outcome, Violation, CONFIG_DIR};

/// The login role the server uses (deploy/postgres/bootstrap-roles.sql).
pub const RUNTIME_LOGIN_ROLE: &str = "rampart_app";
/// The role migrations run as.
pub const OWNER_ROLE: &str = "rampart_owner";
/// The same key as the test harness's template lock (crates/testkit), so role bootstrap never
/// runs twice at once on one cluster, whoever runs it.
const BOOTSTRAP_LOCK_KEY: i64 = 0x7465_6d70_6c61_7465;

pub const GLOBAL_TABLES: &str = "global-tables.toml";
pub const SECRET_COLUMNS: &str = "secret-columns.toml";

/// Words in a column name that say it holds a secret (split on `_`).
const SECRET_WORDS: &[&str] = &["token", "secret", "password", "passwd", "passphrase", "credential", "key"];
/// How a secret is stored when it is not in clear: a keyed hash or AES-256-GCM ciphertext.
const SAFE_SUFFIXES: &[&str] = &["_hash", "_ciphertext"];

const NOT_SYSTEM: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

#[derive(Debug, Clone)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub enabled: bool,
    pub forced: bool,
    pub has_tenant_id: bool,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// How the allow-list names it: bare in `public`, qualified elsewhere.
    fn list_key(&self) -> String {
        if self.schema == "public" {
            self.name.clone()
        } else {
            self.qualified()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub schema: String,
    pub table: String,
    /// `pg_policy.polcmd`: r SELECT, a INSERT, w UPDATE, d DELETE, * ALL.
    pub cmd: char,
    pub permissive: bool,
    /// Role names the policy applies to; `public` for everyone.
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct VolatileCall {
    pub schema: String,
    pub table: String,
    pub policy: String,
    pub function: String,
    pub expression: String,
}

#[derive(Debug, Clone)]
pub struct DefinerFunction {
    pub signature: String,
    pub name: String,
    pub config: Option<String>,
}

/// The runtime role, or a role it may `SET ROLE` to.
#[derive(Debug, Clone)]
pub struct RoleFacts {
    pub role: String,
    pub superuser: bool,
    pub bypass_rls: bool,
    pub owned_relations: Option<String>,
    pub owned_functions: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub schema: String,
    pub table: String,
    pub column: String,
}

/// What the gate reads from `pg_catalog`.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub tables: Vec<Table>,
    pub policies: Vec<Policy>,
    pub volatile_calls: Vec<VolatileCall>,
    pub definers: Vec<DefinerFunction>,
    pub runtime_role: String,
    /// The runtime role first, then every role it is a member of; empty when it does not exist.
    pub roles: Vec<RoleFacts>,
    pub columns: Vec<Column>,
}

async fn rows(
    conn: &DatabaseConnection,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> anyhow::Result<Vec<sea_orm::QueryResult>> {
    let stmt = Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values);
    conn.query_all(stmt).await.with_context(|| sql.to_owned())
}

/// Reads everything the checks need. `conn` should see every object (the harness's superuser).
pub async fn read(conn: &DatabaseConnection, runtime_role: &str) -> anyhow::Result<Catalogue> {
    let mut cat = Catalogue { runtime_role: runtime_role.to_owned(), ..Catalogue::default() };
    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS name, c.relrowsecurity AS enabled,
                c.relforcerowsecurity AS forced,
                EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id'
                         AND a.attnum > 0 AND NOT a.attisdropped) AS has_tenant_id
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND {NOT_SYSTEM}
          ORDER BY 1, 2"
    );
    for r in rows(conn, &sql, vec![]).await? {
        cat.tables.push(Table {
            schema: r.try_get("", "schema")?,
            name: r.try_get("", "name")?,
            enabled: r.try_get("", "enabled")?,
            forced: r.try_get("", "forced")?,
            has_tenant_id: r.try_get("", "has_tenant_id")?,
        });
    }

    let sql = "SELECT n.nspname::text AS schema, c.relname::text AS table, pol.polname::text AS name,
                      pol.polcmd::text AS cmd, pol.polpermissive AS permissive,
                      (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END, ',')
                         FROM unnest(pol.polroles) AS r) AS roles
                 FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                ORDER BY 1, 2, 3";
    for r in rows(conn, sql, vec![]).await? {
        let cmd: String = r.try_get("", "cmd")?;
        let roles: Option<String> = r.try_get("", "roles")?;
        cat.policies.push(Policy {
            schema: r.try_get("", "schema")?,
            table: r.try_get("", "table")?,
            cmd: cmd.chars().next().unwrap_or('?'),
            permissive: r.try_get("", "permissive")?,
            roles: roles.unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        });
    }

    // Built-in functions are pinned objects with no pg_depend rows, so the expressions' node trees
    // are read instead: every function call (`:funcid`) and operator implementation (`:opfuncid`).
    let sql = "SELECT DISTINCT n.nspname::text AS schema, c.relname::text AS table, pol.polname::text AS policy,
                      p.oid::regprocedure::text AS function,
                      concat_ws(' WITH CHECK ', pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid)) AS expression
                 FROM pg_policy pol
                 JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 CROSS JOIN LATERAL regexp_matches(coalesce(pol.polqual::text, '') || ' ' || coalesce(pol.polwithcheck::text, ''),
                                                   ':(?:op)?funcid (\\d+)', 'g') AS m(g)
                 JOIN pg_proc p ON p.oid = m.g[1]::oid
                WHERE p.provolatile = 'v'
                ORDER BY 1, 2, 3, 4";
    for r in rows(conn, sql, vec![]).await? {
        cat.volatile_calls.push(VolatileCall {
            schema: r.try_get("", "schema")?,
            table: r.try_get("", "table")?,
            policy: r.try_get("", "policy")?,
            function: r.try_get("", "function")?,
            expression: r.try_get::<Option<String>>("", "expression")?.unwrap_or_default(),
        });
    }

    let sql = format!(
        "SELECT p.oid::regprocedure::text AS signature, p.proname::text AS name,
                array_to_string(p.proconfig, ', ') AS config
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.prosecdef AND {NOT_SYSTEM}
          ORDER BY 1"
    );
    for r in rows(conn, &sql, vec![]).await? {
        cat.definers.push(DefinerFunction {
            signature: r.try_get("", "signature")?,
            name: r.try_get("", "name")?,
            config: r.try_get("", "config")?,
        });
    }

    // The role and every role it can become with SET ROLE (membership, transitively).
    let sql = format!(
        "WITH RECURSIVE member_of(oid, depth) AS (
             SELECT oid, 0 FROM pg_roles WHERE rolname = $1
             UNION
             SELECT m.roleid, member_of.depth + 1 FROM pg_auth_members m JOIN member_of ON m.member = member_of.oid
         )
         SELECT r.rolname::text AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypass_rls,
                (SELECT string_agg(n.nspname || '.' || c.relname, ', ' ORDER BY n.nspname, c.relname)
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relowner = r.oid AND {NOT_SYSTEM}) AS owned_relations,
                (SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1)
                   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE p.proowner = r.oid AND {NOT_SYSTEM}) AS owned_functions
           FROM (SELECT oid, min(depth) AS depth FROM member_of GROUP BY oid) m JOIN pg_roles r ON r.oid = m.oid
          ORDER BY m.depth, r.rolname"
    );
    for r in rows(conn, &sql, vec![runtime_role.into()]).await? {
        cat.roles.push(RoleFacts {
            role: r.try_get("", "role")?,
            superuser: r.try_get("", "superuser")?,
            bypass_rls: r.try_get("", "bypass_rls")?,
            owned_relations: r.try_get("", "owned_relations")?,
            owned_functions: r.try_get("", "owned_functions")?,
        });
    }

    let sql = format!(
        "SELECT n.nspname::text AS schema, c.relname::text AS table, a.attname::text AS column
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND {NOT_SYSTEM}
          ORDER BY 1, 2, a.attnum"
    );
    for r in rows(conn, &sql, vec![]).await? {
        cat.columns.push(Column {
            schema: r.try_get("", "schema")?,
            table: r.try_get("", "table")?,
            column: r.try_get("", "column")?,
        });
    }
    Ok(cat)
}

/// Finds where the migrations create an object, so a message can point at the file and line.
#[derive(Debug, Default)]
pub struct Locator {
    files: Vec<(String, String)>,
}

impl Locator {
    pub fn from_migrations(root: &Path) -> Locator {
        let dir = root.join("migrations/postgres");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "sql"))
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                Some((format!("migrations/postgres/{}", e.file_name().to_string_lossy()), text))
            })
            .collect();
        files.sort();
        Locator { files }
    }

    /// `path:line` of the first line that starts with `what` followed by `name` as a whole word.
    fn find(&self, what: &str, name: &str) -> Option<String> {
        for (path, text) in &self.files {
            for (i, line) in text.lines().enumerate() {
                let lower = line.trim_start().to_ascii_lowercase();
                let Some(rest) = lower.strip_prefix(what) else { continue };
                let rest = rest.trim_start();
                let rest = rest.strip_prefix("if not exists ").unwrap_or(rest);
                let rest = rest.strip_prefix("public.").unwrap_or(rest);
                if rest
                    .strip_prefix(name)
                    .is_some_and(|after| !after.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
                {
                    return Some(format!("{path}:{}", i + 1));
                }
            }
        }
        None
    }

    fn table(&self, table: &Table) -> String {
        let object = format!("table {}", table.qualified());
        match self.find("create table", &table.name) {
            Some(at) => format!("{object} ({at})"),
            None => object,
        }
    }

    fn function(&self, f: &DefinerFunction) -> String {
        let object = format!("function {}", f.signature);
        let found = self.find("create function", &f.name).or_else(|| self.find("create or replace function", &f.name));
        match found {
            Some(at) => format!("{object} ({at})"),
            None => object,
        }
    }
}

/// The commands a policy's `polcmd` covers.
fn covers(cmd: char) -> &'static [&'static str] {
    match cmd {
        'r' => &["SELECT"],
        'a' => &["INSERT"],
        'w' => &["UPDATE"],
        'd' => &["DELETE"],
        '*' => &["SELECT", "INSERT", "UPDATE", "DELETE"],
        _ => &[],
    }
}

fn policy_template(table: &Table, command: &str) -> String {
    let using = "USING (tenant_id = app_tenant_id())";
    let check = "WITH CHECK (tenant_id = app_tenant_id())";
    let clause = match command {
        "INSERT" => check.to_owned(),
        "UPDATE" => format!("{using} {check}"),
        _ => using.to_owned(),
    };
    let never = if command == "INSERT" { "WITH CHECK (false)" } else { "USING (false)" };
    format!(
        "CREATE POLICY {name}_{lower} ON {table} FOR {command} {clause}; (or `{never}` if the command is never allowed)",
        name = table.name,
        lower = command.to_ascii_lowercase(),
        table = table.qualified()
    )
}

/// Row-level security: tenant tables, the global allow-list, the runtime role, SECURITY DEFINER
/// functions and the volatility of what policies call.
pub fn check_rls(cat: &Catalogue, global: &[(String, String)], global_text: &str, locator: &Locator) -> Outcome {
    let mut out = Outcome::default();
    let (forced, covered) = check_tenant_tables(cat, locator, &mut out);
    let listed = check_global_tables(cat, global, global_text, locator, &mut out);
    check_runtime_role(cat, &mut out);
    let pinned = check_definers(cat, locator, &mut out);
    check_volatile_calls(cat, &mut out);
    rls_summary(cat, forced, covered, listed, pinned, &mut out);
    out
}

/// Every `tenant_id` table has RLS enabled and forced and a permissive policy per command that
/// applies to the runtime role; returns how many are forced and how many are covered.
fn check_tenant_tables(cat: &Catalogue, locator: &Locator, out: &mut Outcome) -> (usize, usize) {
    let runtime_roles: Vec<&str> = cat.roles.iter().map(|r| r.role.as_str()).collect();
    let tenant: Vec<&Table> = cat.tables.iter().filter(|t| t.has_tenant_id).collect();
    let (mut forced, mut covered) = (0, 0);
    for t in &tenant {
        let place = locator.table(t);
        if !t.enabled {
            out.push(Violation::new(
                &place,
                "has tenant_id but row-level security is not enabled: every role sees every tenant's rows",
                format!(
                    "ALTER TABLE {0} ENABLE ROW LEVEL SECURITY; ALTER TABLE {0} FORCE ROW LEVEL SECURITY;",
                    t.qualified()
                ),
            ));
        } else if !t.forced {
            out.push(Violation::new(
                &place,
                "has tenant_id and RLS enabled but not FORCEd: the owner role (migrations, maintenance) bypasses every policy",
                format!("ALTER TABLE {} FORCE ROW LEVEL SECURITY;", t.qualified()),
            ));
        }
        if t.enabled && t.forced {
            forced += 1;
        }
        let mut missing = Vec::new();
        for command in ["SELECT", "INSERT", "UPDATE", "DELETE"] {
            let has = cat.policies.iter().any(|p| {
                p.schema == t.schema
                    && p.table == t.name
                    && p.permissive
                    && covers(p.cmd).contains(&command)
                    && p.roles.iter().any(|r| r == "public" || runtime_roles.contains(&r.as_str()))
            });
            if !has {
                missing.push(command);
            }
        }
        if missing.is_empty() {
            covered += 1;
        }
        for command in &missing {
            out.push(Violation::new(
                &place,
                format!(
                    "has tenant_id but no permissive {command} policy that applies to the runtime role `{}`: the rule for {command} was never written down",
                    cat.runtime_role
                ),
                policy_template(t, command),
            ));
        }
    }
    (forced, covered)
}

/// Every table without `tenant_id` is listed as global, and every listed table exists and has no
/// `tenant_id`; returns how many are listed.
fn check_global_tables(
    cat: &Catalogue,
    global: &[(String, String)],
    global_text: &str,
    locator: &Locator,
    out: &mut Outcome,
) -> usize {
    let list_file = format!("{CONFIG_DIR}/{GLOBAL_TABLES}");
    let global_keys: Vec<&str> = global.iter().map(|(k, _)| k.as_str()).collect();
    let untenanted: Vec<&Table> = cat.tables.iter().filter(|t| !t.has_tenant_id).collect();
    let mut listed = 0;
    for t in &untenanted {
        if global_keys.contains(&t.list_key().as_str()) {
            listed += 1;
        } else {
            out.push(Violation::new(
                locator.table(t),
                "has no tenant_id column and is not listed as a global table",
                format!(
                    "if it holds tenant data, add `tenant_id uuid NOT NULL REFERENCES workspaces (id)` with ENABLE and FORCE ROW LEVEL SECURITY and a policy per command; if it is global by design, add `{} = \"<why it holds no tenant's data>\"` to {list_file}",
                    t.list_key()
                ),
            ));
        }
    }
    for key in &global_keys {
        let found = cat.tables.iter().find(|t| t.list_key() == *key);
        let problem = match found {
            None => "lists a table that does not exist",
            Some(t) if t.has_tenant_id => "lists a table that now has tenant_id, so the RLS rules apply to it",
            Some(_) => continue,
        };
        let line = config_line(global_text, key).map(|l| format!(":{l}")).unwrap_or_default();
        out.push(Violation::new(
            format!("{list_file}{line}"),
            format!("{problem}: `{key}`"),
            format!("remove `{key}` from {list_file}"),
        ));
    }
    listed
}

/// The runtime role, and every role it can become, is not superuser, not `BYPASSRLS` and owns
/// nothing.
fn check_runtime_role(cat: &Catalogue, out: &mut Outcome) {
    let role_file = "deploy/postgres/bootstrap-roles.sql";
    match cat.roles.first() {
        None => out.push(Violation::new(
            format!("role {}", cat.runtime_role),
            "the runtime role does not exist after the bootstrap script and migrations ran",
            format!(
                "create it in {role_file} as NOSUPERUSER NOBYPASSRLS, a member of `{}`",
                storage::RUNTIME_GROUP_ROLE
            ),
        )),
        Some(runtime) => {
            for r in &cat.roles {
                let (place, how) = if r.role == runtime.role {
                    (format!("role {}", r.role), String::new())
                } else {
                    (
                        format!("role {} (the runtime role {} is a member of it)", r.role, runtime.role),
                        format!(" or REVOKE {} FROM {}", r.role, runtime.role),
                    )
                };
                if r.superuser {
                    out.push(Violation::new(
                        &place,
                        "is a SUPERUSER: it bypasses every row-level security policy",
                        format!("ALTER ROLE {} NOSUPERUSER ({role_file}){how}", r.role),
                    ));
                }
                if r.bypass_rls {
                    out.push(Violation::new(
                        &place,
                        "has BYPASSRLS: it bypasses every row-level security policy",
                        format!("ALTER ROLE {} NOBYPASSRLS ({role_file}){how}", r.role),
                    ));
                }
                if let Some(owned) = &r.owned_relations {
                    out.push(Violation::new(
                        &place,
                        format!("owns {owned}: an owner bypasses RLS on tables that are not FORCEd and may alter or drop them"),
                        format!("let migrations run as `{OWNER_ROLE}` (ALTER TABLE … OWNER TO {OWNER_ROLE}) and grant the runtime group only privileges{how}"),
                    ));
                }
                if let Some(owned) = &r.owned_functions {
                    out.push(Violation::new(
                        &place,
                        format!("owns {owned}: an owner may replace what policies and triggers run"),
                        format!("ALTER FUNCTION … OWNER TO {OWNER_ROLE}{how}"),
                    ));
                }
            }
        }
    }
}

/// `SECURITY DEFINER` functions pin their `search_path`; returns how many do.
fn check_definers(cat: &Catalogue, locator: &Locator, out: &mut Outcome) -> usize {
    let mut pinned = 0;
    for f in &cat.definers {
        let pins = f.config.as_deref().unwrap_or("").split(", ").any(|c| c.starts_with("search_path="));
        if pins {
            pinned += 1;
        } else {
            out.push(Violation::new(
                locator.function(f),
                "is SECURITY DEFINER without a pinned search_path: a caller can shadow the objects it uses with their own",
                format!("ALTER FUNCTION {} SET search_path = pg_catalog, public, pg_temp; (or `SET search_path` in its CREATE FUNCTION)", f.signature),
            ));
        }
    }
    pinned
}

/// No policy expression calls a `VOLATILE` function.
fn check_volatile_calls(cat: &Catalogue, out: &mut Outcome) {
    for call in &cat.volatile_calls {
        out.push(Violation::new(
            format!("policy {} on table {}.{}", call.policy, call.schema, call.table),
            format!("calls the VOLATILE function {}: it runs once per row, not once per statement ({})", call.function, call.expression),
            "declare the function STABLE if it changes nothing in the database, or compute the value once with a STABLE function reading the transaction's settings",
        ));
    }
}

fn rls_summary(cat: &Catalogue, forced: usize, covered: usize, listed: usize, pinned: usize, out: &mut Outcome) {
    let tenant = cat.tables.iter().filter(|t| t.has_tenant_id).count();
    let untenanted = cat.tables.len() - tenant;
    let others = cat.roles.len().saturating_sub(1);
    let role_ok = !cat.roles.is_empty()
        && cat
            .roles
            .iter()
            .all(|r| !r.superuser && !r.bypass_rls && r.owned_relations.is_none() && r.owned_functions.is_none());
    out.summary.push(format!("RLS: {forced}/{tenant} tenant tables forced"));
    out.summary
        .push(format!("RLS: {covered}/{tenant} tenant tables have a policy for SELECT, INSERT, UPDATE and DELETE"));
    out.summary
        .push(format!("RLS: {listed}/{untenanted} tables without tenant_id are listed as global, each with a reason"));
    out.summary.push(format!(
        "RLS: runtime role {} (and {others} role(s) it can become) {}",
        cat.runtime_role,
        if role_ok { "is NOSUPERUSER NOBYPASSRLS and owns nothing" } else { "is UNSAFE" }
    ));
    out.summary.push(format!("RLS: {pinned}/{} SECURITY DEFINER functions pin search_path", cat.definers.len()));
    out.summary.push(format!(
        "RLS: {} policies, {} call a VOLATILE function",
        cat.policies.len(),
        cat.volatile_calls.len()
    ));
}

/// Whether a column's name says it holds a token, secret, password or key.
pub fn names_a_secret(column: &str) -> bool {
    let lower = column.to_ascii_lowercase();
    lower.split('_').any(|word| SECRET_WORDS.iter().any(|s| word.contains(s)))
}

/// No plaintext secrets at rest: a column named for a secret holds a hash or ciphertext.
pub fn check_secrets(cat: &Catalogue, allowed: &[(String, String)], allowed_text: &str, locator: &Locator) -> Outcome {
    let mut out = Outcome::default();
    let list_file = format!("{CONFIG_DIR}/{SECRET_COLUMNS}");
    let keys: Vec<&str> = allowed.iter().map(|(k, _)| k.as_str()).collect();
    let (mut named, mut safe, mut excepted) = (0, 0, 0);
    for c in &cat.columns {
        if !names_a_secret(&c.column) {
            continue;
        }
        named += 1;
        let key = if c.schema == "public" {
            format!("{}.{}", c.table, c.column)
        } else {
            format!("{}.{}.{}", c.schema, c.table, c.column)
        };
        if SAFE_SUFFIXES.iter().any(|s| c.column.ends_with(s)) {
            safe += 1;
        } else if keys.contains(&key.as_str()) {
            excepted += 1;
        } else {
            let table = cat.tables.iter().find(|t| t.schema == c.schema && t.name == c.table);
            let at = table.map(|t| locator.table(t)).unwrap_or_else(|| format!("table {}.{}", c.schema, c.table));
            out.push(Violation::new(
                format!("column {key} in {at}"),
                "its name says it holds a token, secret, password or key, but it is neither `*_hash` nor `*_ciphertext`",
                format!(
                    "store an HMAC-SHA256 hash (`{0}_hash`) or AES-256-GCM ciphertext (`{0}_ciphertext`) instead; if it is not a secret (a key id, a public prefix), add `\"{key}\" = \"<why it is not secret>\"` to {list_file}",
                    c.column
                ),
            ));
        }
    }
    for key in &keys {
        let exists = cat.columns.iter().any(|c| {
            let k = if c.schema == "public" {
                format!("{}.{}", c.table, c.column)
            } else {
                format!("{}.{}.{}", c.schema, c.table, c.column)
            };
            k == *key
        });
        if !exists {
            let line = config_line(allowed_text, key).map(|l| format!(":{l}")).unwrap_or_default();
            out.push(Violation::new(
                format!("{list_file}{line}"),
                format!("lists a column that does not exist: `{key}`"),
                format!("remove `{key}` from {list_file}"),
            ));
        }
    }
    out.summary.push(format!(
        "Secrets at rest: {}/{named} columns named for a token, secret, password or key are hashed or sealed ({excepted} listed exceptions)",
        safe + excepted
    ));
    out
}

/// A connection pool of one, so session settings hold for every statement.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1).min_connections(0).sqlx_logging(false);
    Database::connect(opts).await.context("connecting to PostgreSQL")
}

fn with_db(admin_url: &str, db: &str, role: Option<&str>) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin_url).context("the PostgreSQL URL is not a URL")?;
    url.set_path(&format!("/{db}"));
    if let Some(role) = role {
        // The admin connection acts as `role` from its first statement: objects it creates are
        // owned by `role`, as when the owner runs `rampart migrate`, and no password is needed.
        url.query_pairs_mut().append_pair("options", &format!("-c role={role}"));
    }
    Ok(url.to_string())
}

/// A database that exists for one gate run or one test, migrated by the owner role.
#[derive(Debug)]
pub struct ScratchDb {
    admin_url: String,
    name: String,
    /// The admin (superuser) connection to this database: sees every object.
    pub conn: DatabaseConnection,
}

impl ScratchDb {
    /// Runs the bootstrap roles script, creates a database owned by the owner role and applies
    /// every migration as that role.
    pub async fn create(root: &Path, admin_url: &str) -> anyhow::Result<ScratchDb> {
        let bootstrap_path = root.join("deploy/postgres/bootstrap-roles.sql");
        let bootstrap = std::fs::read_to_string(&bootstrap_path)
            .with_context(|| format!("reading {}", bootstrap_path.display()))?;
        let admin = connect(admin_url).await?;
        admin.execute_unprepared(&format!("SELECT pg_advisory_lock({BOOTSTRAP_LOCK_KEY})")).await?;
        let boot = admin.execute_unprepared(&bootstrap).await.context("running deploy/postgres/bootstrap-roles.sql");
        admin.execute_unprepared(&format!("SELECT pg_advisory_unlock({BOOTSTRAP_LOCK_KEY})")).await?;
        boot?;
        let name = format!("rampart_gate_{}", uuid::Uuid::new_v4().simple());
        admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0 OWNER {OWNER_ROLE}")).await?;
        admin.close().await?;
        let scratch = ScratchDb {
            admin_url: admin_url.to_owned(),
            conn: connect(&with_db(admin_url, &name, None)?).await?,
            name,
        };
        let owner = connect(&with_db(admin_url, &scratch.name, Some(OWNER_ROLE))?).await?;
        storage::migrate(&owner).await.context("applying the migrations as the owner role")?;
        owner.close().await?;
        Ok(scratch)
    }

    /// Runs `sql` as the owner role, as a later migration would.
    #[cfg(test)]
    pub async fn as_owner(&self, sql: &str) -> anyhow::Result<()> {
        let owner = connect(&with_db(&self.admin_url, &self.name, Some(OWNER_ROLE))?).await?;
        owner.execute_unprepared(sql).await.with_context(|| sql.to_owned())?;
        owner.close().await?;
        Ok(())
    }

    pub async fn close(self) -> anyhow::Result<()> {
        let ScratchDb { admin_url, name, conn } = self;
        conn.close().await?;
        let admin = connect(&admin_url).await?;
        admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await?;
        admin.close().await?;
        Ok(())
    }
}

/// Both catalogue checks against a database as the migrations leave it.
pub fn check(root: &Path, cat: &Catalogue) -> anyhow::Result<Outcome> {
    let locator = Locator::from_migrations(root);
    let (global_text, global) = read_reasons(&root.join(CONFIG_DIR).join(GLOBAL_TABLES), "tables")?;
    let (secret_text, secret) = read_reasons(&root.join(CONFIG_DIR).join(SECRET_COLUMNS), "columns")?;
    let mut out = check_rls(cat, &global, &global_text, &locator);
    out.merge(check_secrets(cat, &secret, &secret_text, &locator));
    Ok(out)
}

/// The gate's step: a throwaway cluster unless RAMPART_TEST_DATABASE_URL names one, a scratch
/// database built from the migrations, its catalogue checked, the database dropped.
pub fn gate(root: &Path) -> anyhow::Result<Outcome> {
    let pg = match std::env::var("RAMPART_TEST_DATABASE_URL") {
        Ok(url) => crate::services::Service::External(url),
        Err(_) => crate::services::start_postgres()?,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cat = rt.block_on(async {
        let db = ScratchDb::create(root, &pg.url()).await?;
        let cat = read(&db.conn, RUNTIME_LOGIN_ROLE).await;
        db.close().await?;
        cat
    })?;
    drop(pg);
    check(root, &cat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        crate::workspace_root()
    }

    /// A migrated scratch database on the harness's PostgreSQL (RAMPART_TEST_DATABASE_URL).
    async fn scratch() -> ScratchDb {
        let url = std::env::var("RAMPART_TEST_DATABASE_URL").expect(
            "RAMPART_TEST_DATABASE_URL is not set. Run the suite with `cargo xtask test`, which starts a throwaway PostgreSQL (install it with `apt-get install -y postgresql`), or point it at a role that can create roles and databases.",
        );
        ScratchDb::create(&root(), &url).await.unwrap()
    }

    /// The gate's RLS check on the scratch database with the committed allow-list plus `extra`
    /// global tables.
    async fn rls_outcome(db: &ScratchDb, runtime_role: &str, extra: &[&str]) -> Outcome {
        let cat = read(&db.conn, runtime_role).await.unwrap();
        let (text, mut global) = read_reasons(&root().join(CONFIG_DIR).join(GLOBAL_TABLES), "tables").unwrap();
        global.extend(extra.iter().map(|t| (t.to_string(), "fixture".to_owned())));
        check_rls(&cat, &global, &text, &Locator::from_migrations(&root()))
    }

    #[tokio::test]
    async fn on_postgres_the_migrated_schema_passes_every_catalogue_check() {
        let db = scratch().await;
        let cat = read(&db.conn, RUNTIME_LOGIN_ROLE).await.unwrap();
        db.close().await.unwrap();
        let out = check(&root(), &cat).unwrap();
        assert!(out.violations.is_empty(), "{}", out.text());
        assert!(cat.tables.iter().filter(|t| t.has_tenant_id).count() >= 8);
        let forced = out.summary.iter().find(|l| l.contains("tenant tables forced")).unwrap();
        let n = cat.tables.iter().filter(|t| t.has_tenant_id).count();
        assert_eq!(forced, &format!("RLS: {n}/{n} tenant tables forced"));
    }

    #[tokio::test]
    async fn on_postgres_a_tenant_table_without_force_fails_the_gate_naming_the_table_and_the_fix() {
        let db = scratch().await;
        db.as_owner(
            "CREATE TABLE notes (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, body text NOT NULL);
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             CREATE POLICY notes_all ON notes USING (tenant_id = app_tenant_id()) WITH CHECK (tenant_id = app_tenant_id());",
        )
        .await
        .unwrap();
        let out = rls_outcome(&db, RUNTIME_LOGIN_ROLE, &[]).await;
        db.close().await.unwrap();
        let text = out.text();
        assert_eq!(out.violations.len(), 1, "{text}");
        assert!(text.contains("table public.notes: has tenant_id and RLS enabled but not FORCEd"), "{text}");
        assert!(text.contains("fix: ALTER TABLE public.notes FORCE ROW LEVEL SECURITY;"), "{text}");
        assert!(out
            .summary
            .iter()
            .any(|l| l.starts_with("RLS: ") && l.contains("tenant tables forced") && !l.contains("9/9")));
    }

    #[tokio::test]
    async fn on_postgres_a_tenant_table_without_a_delete_policy_fails_the_gate_with_the_policy_to_write() {
        let db = scratch().await;
        db.as_owner(
            "CREATE TABLE notes (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, body text NOT NULL);
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             ALTER TABLE notes FORCE ROW LEVEL SECURITY;
             CREATE POLICY notes_select ON notes FOR SELECT USING (tenant_id = app_tenant_id());
             CREATE POLICY notes_insert ON notes FOR INSERT WITH CHECK (tenant_id = app_tenant_id());
             CREATE POLICY notes_update ON notes FOR UPDATE USING (tenant_id = app_tenant_id());",
        )
        .await
        .unwrap();
        let out = rls_outcome(&db, RUNTIME_LOGIN_ROLE, &[]).await;
        db.close().await.unwrap();
        let text = out.text();
        assert_eq!(out.violations.len(), 1, "{text}");
        assert!(text.contains("table public.notes: has tenant_id but no permissive DELETE policy"), "{text}");
        assert!(
            text.contains(
                "fix: CREATE POLICY notes_delete ON public.notes FOR DELETE USING (tenant_id = app_tenant_id());"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn on_postgres_a_runtime_role_with_bypassrls_fails_the_gate_naming_the_role() {
        let db = scratch().await;
        let role = format!("gate_fixture_{}", uuid::Uuid::new_v4().simple());
        db.conn.execute_unprepared(&format!("CREATE ROLE {role} LOGIN NOSUPERUSER BYPASSRLS")).await.unwrap();
        let out = rls_outcome(&db, &role, &[]).await;
        db.conn.execute_unprepared(&format!("DROP ROLE {role}")).await.unwrap();
        db.close().await.unwrap();
        let text = out.text();
        assert!(text.contains(&format!("role {role}: has BYPASSRLS")), "{text}");
        assert!(text.contains(&format!("fix: ALTER ROLE {role} NOBYPASSRLS")), "{text}");
        assert!(out.summary.iter().any(|l| l.contains(&role) && l.contains("UNSAFE")));
    }

    #[tokio::test]
    async fn on_postgres_a_runtime_role_that_can_become_the_owner_fails_the_gate() {
        let db = scratch().await;
        let role = format!("gate_fixture_{}", uuid::Uuid::new_v4().simple());
        db.conn.execute_unprepared(&format!("CREATE ROLE {role} LOGIN; GRANT {OWNER_ROLE} TO {role}")).await.unwrap();
        let out = rls_outcome(&db, &role, &[]).await;
        db.conn.execute_unprepared(&format!("DROP ROLE {role}")).await.unwrap();
        db.close().await.unwrap();
        let text = out.text();
        assert!(
            text.contains(&format!("role {OWNER_ROLE} (the runtime role {role} is a member of it): owns public.")),
            "{text}"
        );
        assert!(text.contains(&format!("REVOKE {OWNER_ROLE} FROM {role}")), "{text}");
    }

    #[tokio::test]
    async fn on_postgres_an_unlisted_global_table_an_unpinned_definer_and_a_volatile_policy_fail_the_gate() {
        let db = scratch().await;
        db.as_owner(
            "CREATE TABLE settings (name text PRIMARY KEY, value text NOT NULL);
             CREATE FUNCTION leaky() RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;
             CREATE FUNCTION per_row() RETURNS uuid LANGUAGE sql VOLATILE AS $$ SELECT app_tenant_id() $$;
             CREATE TABLE notes (id uuid PRIMARY KEY, tenant_id uuid NOT NULL);
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
             ALTER TABLE notes FORCE ROW LEVEL SECURITY;
             CREATE POLICY notes_all ON notes USING (tenant_id = per_row() AND random() >= 0);",
        )
        .await
        .unwrap();
        let out = rls_outcome(&db, RUNTIME_LOGIN_ROLE, &[]).await;
        db.close().await.unwrap();
        let text = out.text();
        assert!(
            text.contains("table public.settings: has no tenant_id column and is not listed as a global table"),
            "{text}"
        );
        assert!(
            text.contains("add `settings = \"<why it holds no tenant's data>\"` to xtask/gate/global-tables.toml"),
            "{text}"
        );
        assert!(text.contains("function leaky(): is SECURITY DEFINER without a pinned search_path"), "{text}");
        assert!(text.contains("fix: ALTER FUNCTION leaky() SET search_path = pg_catalog, public, pg_temp;"), "{text}");
        assert!(
            text.contains("policy notes_all on table public.notes: calls the VOLATILE function per_row()"),
            "{text}"
        );
        assert!(
            text.contains("policy notes_all on table public.notes: calls the VOLATILE function random()"),
            "{text}"
        );
    }

    #[test]
    fn secret_named_columns_must_be_hashes_or_ciphertext_or_listed() {
        let col =
            |table: &str, column: &str| Column { schema: "public".into(), table: table.into(), column: column.into() };
        let cat = Catalogue {
            columns: vec![
                col("users", "password_hash"),
                col("api_keys", "key_ciphertext"),
                col("api_keys", "key_prefix"),
                col("webhooks", "signing_secret"),
                col("users", "email"),
            ],
            ..Catalogue::default()
        };
        let listed =
            [("api_keys.key_prefix".to_owned(), "the public first characters shown to identify a key".to_owned())];
        let out = check_secrets(&cat, &listed, "", &Locator::default());
        let text = out.text();
        assert_eq!(out.violations.len(), 1, "{text}");
        assert!(text.contains("column webhooks.signing_secret in table public.webhooks: its name says it holds a token, secret, password or key"), "{text}");
        assert!(text.contains("`signing_secret_hash`") && text.contains("`signing_secret_ciphertext`"), "{text}");
        assert_eq!(out.summary, ["Secrets at rest: 3/4 columns named for a token, secret, password or key are hashed or sealed (1 listed exceptions)"]);
    }

    #[test]
    fn secret_words_are_matched_within_the_parts_of_a_column_name() {
        for name in ["token_hash", "api_key", "apikey", "refresh_tokens", "client_secret", "PASSWORD"] {
            assert!(names_a_secret(name), "{name}");
        }
        for name in ["email", "tenant_id", "created_at", "content_hash"] {
            assert!(!names_a_secret(name), "{name}");
        }
    }

    #[test]
    fn stale_allow_list_entries_are_violations_pointing_at_their_line() {
        let cat = Catalogue {
            tables: vec![Table {
                schema: "public".into(),
                name: "users".into(),
                enabled: false,
                forced: false,
                has_tenant_id: false,
            }],
            roles: vec![RoleFacts {
                role: "app".into(),
                superuser: false,
                bypass_rls: false,
                owned_relations: None,
                owned_functions: None,
            }],
            runtime_role: "app".into(),
            ..Catalogue::default()
        };
        let text = "[tables]\nusers = \"accounts\"\ngone = \"dropped long ago\"\n";
        let global = parse_reasons_for_test(text);
        let out = check_rls(&cat, &global, text, &Locator::default());
        assert_eq!(out.text(), "xtask/gate/global-tables.toml:3: lists a table that does not exist: `gone`\n    fix: remove `gone` from xtask/gate/global-tables.toml\n");
    }

    fn parse_reasons_for_test(text: &str) -> Vec<(String, String)> {
        super::super::parse_reasons(text, "tables").unwrap()
    }
}
