//! API keys: per workspace, with a name, scopes (`resource.action`), an optional expiry and request
//! caps per minute and per month. A key is `rk_live_` + the workspace id + 256 random bits,
//! shown once and stored only as an HMAC-SHA256 hash; it acts as the member who created it,
//! narrowed to its scopes ([`rbac::Role::restricted`]) on every request, so it never does more
//! than its scopes nor more than that member's role at the time.

use chrono::{DateTime, Utc};
use ids::{ApiKeyId, WorkspaceId};
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};
use secrecy::SecretString;
use tenancy::{TenancyError, TenantTx, UserId};
use uuid::Uuid;

use crate::core::error::AuthError;
use crate::core::token::{self, TokenHasher};

/// What every key starts with, so secret scanners (and people) recognise one.
pub const KEY_PREFIX: &str = "rk_live_";
/// Random bytes in a key: 256 bits, above the 128 bits ASVS 5.0 V7.2.3 asks of tokens.
pub const KEY_RANDOM_BYTES: usize = 32;
/// Domain of the keyed hash, so a key never matches another kind of token's hash.
const HASH_PURPOSE: &str = "api-key";
/// Characters of the key shown in listings (the fixed prefix, workspace part and 6 random ones
/// would be too many to read: the prefix and the first 8 random characters).
const SHOWN_RANDOM_CHARS: usize = 8;

/// Default caps of a key created without its own.
pub const DEFAULT_PER_MINUTE: u32 = 600;
pub const DEFAULT_PER_MONTH: u64 = 1_000_000;
/// The highest caps a key may be given.
pub const MAX_PER_MINUTE: u32 = 60_000;
pub const MAX_PER_MONTH: u64 = 1_000_000_000;
/// Keys a workspace may hold (revoked ones included).
pub const MAX_KEYS: i64 = 100;
/// `last_used_at` is written at most this often per key (seconds), not on every request.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// A key as its workspace's administrators see it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant: WorkspaceId,
    pub name: String,
    /// `rk_live_` and the first random characters.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub per_minute: u32,
    pub per_month: u64,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A new key's settings.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub per_minute: Option<u32>,
    pub per_month: Option<u64>,
}

/// What an authenticated key may do: act in `tenant` as `user`, within `scopes`, under its caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGrant {
    pub key_id: ApiKeyId,
    pub tenant: WorkspaceId,
    pub user: UserId,
    pub scopes: Vec<Permission>,
    pub per_minute: u32,
    pub per_month: u64,
    /// The workspace requires a second factor and the key's creator has none set up: the key
    /// acts nowhere until they do.
    pub held_by_mfa_rule: bool,
}

fn bad(message: &'static str) -> TenancyError {
    TenancyError::Rejected { code: "invalid_api_key_settings", message }
}

fn from_row(row: &QueryResult) -> Result<ApiKey, TenancyError> {
    let scopes: String = row.try_get("", "scopes")?;
    Ok(ApiKey {
        id: row.try_get("", "id")?,
        tenant: row.try_get("", "tenant_id")?,
        name: row.try_get("", "name")?,
        prefix: row.try_get("", "prefix")?,
        scopes: serde_json::from_str(&scopes)
            .map_err(|_| TenancyError::Internal("API key scopes are not JSON".into()))?,
        per_minute: u32::try_from(row.try_get::<i32>("", "per_minute")?).unwrap_or(1),
        per_month: u64::try_from(row.try_get::<i64>("", "per_month")?).unwrap_or(1),
        created_by: row.try_get("", "created_by")?,
        created_at: row.try_get("", "created_at")?,
        expires_at: row.try_get("", "expires_at")?,
        revoked_at: row.try_get("", "revoked_at")?,
        last_used_at: row.try_get("", "last_used_at")?,
    })
}

const COLUMNS: &str =
    "id, tenant_id, name, prefix, scopes, per_minute, per_month, created_by, created_at, expires_at, revoked_at, last_used_at";

/// Creates a key (`api_keys.manage`, members only). Every scope must be a permission the creator's
/// role grants: nobody mints a key for more than they may do. Returns the key, shown this once.
pub async fn create(
    tx: &TenantTx,
    tokens: &TokenHasher,
    new: NewKey,
    now: DateTime<Utc>,
) -> Result<(ApiKey, SecretString), TenancyError> {
    let access = tx.require_member(&Permission::API_KEYS_MANAGE)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(TenancyError::Invalid("name must be 1 to 100 characters without control characters"));
    }
    if new.scopes.is_empty() || new.scopes.len() > 32 {
        return Err(bad("a key needs 1 to 32 scopes"));
    }
    let mut scopes: Vec<Permission> = Vec::new();
    for text in &new.scopes {
        let scope = Permission::parse(text.trim())?;
        rbac::authorize(&access.role, &scope).map_err(|_| rbac::RbacError::Escalation { permission: scope.clone() })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if new.expires_at.is_some_and(|at| at <= now) {
        return Err(bad("expires_at must be in the future"));
    }
    let per_minute = new.per_minute.unwrap_or(DEFAULT_PER_MINUTE);
    let per_month = new.per_month.unwrap_or(DEFAULT_PER_MONTH);
    if !(1..=MAX_PER_MINUTE).contains(&per_minute) || !(1..=MAX_PER_MONTH).contains(&per_month) {
        return Err(bad("per_minute is 1 to 60,000 and per_month 1 to 1,000,000,000"));
    }
    check_key_cap(tx).await?;
    let random = token::generate();
    let key = format!("{KEY_PREFIX}{}_{random}", tx.tenant().0.simple());
    let prefix = format!("{KEY_PREFIX}{}", &random[..SHOWN_RANDOM_CHARS]);
    let id = ApiKeyId::new_random();
    let scope_texts: Vec<String> = scopes.iter().map(Permission::to_string).collect();
    let scopes_json = serde_json::to_string(&scope_texts).map_err(|e| TenancyError::Internal(e.to_string()))?;
    tx.conn()
        .execute(tx.statement(
            &format!(
                "INSERT INTO api_keys ({COLUMNS}, key_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11)"
            ),
            vec![
                id.into(),
                tx.tenant().0.into(),
                name.into(),
                prefix.into(),
                scopes_json.into(),
                i32::try_from(per_minute).unwrap_or(i32::MAX).into(),
                i64::try_from(per_month).unwrap_or(i64::MAX).into(),
                tx.user().0.into(),
                now.into(),
                new.expires_at.into(),
                tokens.hash(HASH_PURPOSE, &key).into(),
            ],
        ))
        .await?;
    tx.record(
        audit::Category::Secret,
        "api_key.created",
        serde_json::json!({ "key_id": id, "name": name, "scopes": scope_texts, "expires_at": new.expires_at }),
        now,
    )
    .await?;
    Ok((get(tx, id).await?, SecretString::from(key)))
}

/// Refuses a new key once the workspace holds [`MAX_KEYS`].
async fn check_key_cap(tx: &TenantTx) -> Result<(), TenancyError> {
    // The cap is counted, then kept: concurrent creations in one workspace take turns, so each
    // counts the keys made before it.
    tx.take_turn("api_keys").await?;
    let count: i64 = tx
        .conn()
        .query_one(tx.statement("SELECT COUNT(*) AS n FROM api_keys WHERE tenant_id = $1", vec![tx.tenant().0.into()]))
        .await?
        .map(|r| r.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    if count >= MAX_KEYS {
        return Err(TenancyError::Rejected {
            code: "too_many_api_keys",
            message: "a workspace holds at most 100 API keys",
        });
    }
    Ok(())
}

async fn get(tx: &TenantTx, id: ApiKeyId) -> Result<ApiKey, TenancyError> {
    let row = tx
        .conn()
        .query_one(tx.statement(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"),
            vec![tx.tenant().0.into(), id.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row)
}

/// The workspace's keys, newest first (`api_keys.manage`).
pub async fn list(tx: &TenantTx) -> Result<Vec<ApiKey>, TenancyError> {
    tx.require_member(&Permission::API_KEYS_MANAGE)?;
    let rows = tx
        .conn()
        .query_all(tx.statement(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"),
            vec![tx.tenant().0.into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// Revokes a key at once (`api_keys.manage`): its next request is refused.
pub async fn revoke(tx: &TenantTx, id: ApiKeyId, now: DateTime<Utc>) -> Result<ApiKey, TenancyError> {
    tx.require_member(&Permission::API_KEYS_MANAGE)?;
    let key = get(tx, id).await?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let done = tx
        .conn()
        .execute(tx.statement(
            "UPDATE api_keys SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL",
            vec![now.into(), tx.tenant().0.into(), id.into()],
        ))
        .await?;
    // A concurrent revocation may have come first: it recorded the revocation, this one answers
    // the key as that one left it.
    if done.rows_affected() == 1 {
        let payload = serde_json::json!({ "key_id": id, "name": key.name });
        tx.record(audit::Category::Secret, "api_key.revoked", payload, now).await?;
    }
    get(tx, id).await
}

/// The workspace a presented key names, if it has the key's shape.
fn tenant_of(presented: &str) -> Option<Uuid> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (tenant, random) = rest.split_once('_')?;
    if random.len() != KEY_RANDOM_BYTES * 2 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(tenant).ok()
}

/// Finds the live key `presented` names: unknown, malformed, revoked and expired keys are all
/// [`AuthError::Unauthenticated`] alike. Records its last use (once a minute at most).
pub(crate) async fn authenticate(
    db: &storage::Db,
    tokens: &TokenHasher,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<KeyGrant, AuthError> {
    let tenant = tenant_of(presented).ok_or(AuthError::Unauthenticated)?;
    let hash = tokens.hash(HASH_PURPOSE, presented);
    let tx = TenantTx::begin_claiming(db, WorkspaceId(tenant), UserId(Uuid::nil())).await.map_err(internal)?;
    let found = lookup(&tx, &hash, now).await;
    tx.settle(found).await.map_err(internal)?.ok_or(AuthError::Unauthenticated)
}

async fn lookup(tx: &TenantTx, hash: &str, now: DateTime<Utc>) -> Result<Option<KeyGrant>, TenancyError> {
    let row = tx
        .conn()
        .query_one(tx.statement(
            &format!(
                "SELECT {}, w.require_mfa,
                        EXISTS (SELECT 1 FROM user_totp t WHERE t.user_id = k.created_by AND t.confirmed_at IS NOT NULL) AS creator_mfa
                   FROM api_keys k JOIN workspaces w ON w.id = k.tenant_id
                  WHERE k.tenant_id = $1 AND k.key_hash = $2 AND w.deleted_at IS NULL",
                COLUMNS.split(", ").map(|c| format!("k.{c}")).collect::<Vec<_>>().join(", ")
            ),
            vec![tx.tenant().0.into(), hash.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let key = from_row(&row)?;
    let require_mfa: bool = row.try_get("", "require_mfa")?;
    let creator_mfa: bool = row.try_get("", "creator_mfa")?;
    if key.revoked_at.is_some() || key.expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    if key.last_used_at.is_none_or(|at| (now - at).num_seconds() >= LAST_USED_GRANULARITY_SECS) {
        tx.conn()
            .execute(tx.statement(
                "UPDATE api_keys SET last_used_at = $1 WHERE tenant_id = $2 AND id = $3",
                vec![now.into(), tx.tenant().0.into(), key.id.into()],
            ))
            .await?;
    }
    let scopes = key.scopes.iter().map(|s| Permission::parse(s)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(KeyGrant {
        key_id: key.id,
        tenant: key.tenant,
        user: key.created_by,
        scopes,
        per_minute: key.per_minute,
        per_month: key.per_month,
        held_by_mfa_rule: require_mfa && !creator_mfa,
    }))
}

fn internal(err: TenancyError) -> AuthError {
    AuthError::Internal(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_of_the_exact_shape_name_a_workspace() {
        let ws = Uuid::new_v4();
        let random = "ab".repeat(KEY_RANDOM_BYTES);
        assert_eq!(tenant_of(&format!("rk_live_{}_{random}", ws.simple())), Some(ws));
        for bad in [
            format!("rk_test_{}_{random}", ws.simple()),
            format!("rk_live_{}_{}", ws.simple(), &random[1..]),
            format!("rk_live_{}_{}zz", ws.simple(), &random[2..]),
            format!("rk_live_nope_{random}"),
            "rk_live_".to_owned(),
            String::new(),
        ] {
            assert_eq!(tenant_of(&bad), None, "{bad}");
        }
    }
}
