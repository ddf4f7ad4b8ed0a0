//! Activity: records private to one user inside a workspace. Only their owner reads, lists or
//! deletes them — not the workspace's Owner or Admin — in code here and by policy on PostgreSQL.
//! Every record is ingested through the seven-stage `pii::pipeline` (sensitive applications,
//! private windows, the user's allowed windows, PII stripping, title and text cuts, de-duplication
//! against the user's stored records); only what survives is stored, already stripped.

use chrono::{DateTime, Utc};
use ids::ActivityId;
use rbac::Permission;
use sea_orm::{ConnectionTrait, QueryResult};

use crate::{check_name, stmt, TenancyError, TenantTx};

/// Longest body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// One activity record.
#[derive(Debug, Clone, PartialEq, Eq, sea_orm::FromQueryResult)]
pub struct Activity {
    pub id: ActivityId,
    pub app: String,
    pub title: String,
    pub body: String,
    /// The pipeline's content hash (SHA-256 over the cleaned application, title and text), hex.
    pub content_hash: String,
    pub occurred_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, app, title, body, content_hash, occurred_at";

fn from_row(row: &QueryResult) -> Result<Activity, TenancyError> {
    Ok(<Activity as sea_orm::FromQueryResult>::from_query_result(row, "")?)
}

/// The principal must be a member with `activity.read_own`; grants never reach activity.
fn require_own(tx: &TenantTx) -> Result<(), TenancyError> {
    tx.require_member(&Permission::ACTIVITY_READ_OWN).map(|_| ())
}

/// A captured activity as the client sends it.
#[derive(Debug, Clone)]
pub struct NewActivity {
    pub app: String,
    pub title: String,
    pub body: String,
    /// Whether the client reported a private or incognito window.
    pub private_window: bool,
}

/// What ingestion did: the stored record (`None` when a stage dropped it) and every stage's
/// report, without the content.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub activity: Option<Activity>,
    pub stages: Vec<pii::pipeline::StageReport>,
}

/// Ingests activity for the principal through `pipeline`, at `now` (the capture time).
pub async fn record(
    tx: &TenantTx,
    pipeline: &pii::pipeline::Pipeline,
    new: NewActivity,
    now: DateTime<Utc>,
) -> Result<Ingested, TenancyError> {
    require_own(tx)?;
    let app = check_name(&new.app)?.to_owned();
    let title = new.title.trim().to_owned();
    if title.chars().any(char::is_control) {
        return Err(TenancyError::Invalid("title must not contain control characters"));
    }
    if new.body.len() > MAX_BODY_BYTES {
        return Err(TenancyError::Invalid("body is at most 16 KiB"));
    }
    let schedule = windows(tx).await?;
    let item = pii::pipeline::Activity { app, title, text: new.body, private_window: new.private_window, at: now };
    let mut processed = pipeline.process(item, &schedule, &|_: &pii::pipeline::ContentHash| false);
    let (Some(item), Some(hash)) = (processed.item.take(), processed.content_hash) else {
        return Ok(Ingested { activity: None, stages: processed.reports });
    };
    let hash = hash.to_string();
    // Identical captures queue here until the first commits, so the next one sees it stored
    // and is dropped as a copy.
    tx.take_turn(&format!("activity:{}:{hash}", tx.user().0)).await?;
    let seen = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT 1 AS one FROM activity WHERE tenant_id = $1 AND user_id = $2 AND content_hash = $3",
            vec![tx.tenant().0.into(), tx.user().0.into(), hash.clone().into()],
        ))
        .await?
        .is_some();
    if seen {
        if let Some(last) = processed.reports.last_mut() {
            last.outcome = pii::pipeline::Outcome::Dropped(format!("identical content was already stored ({hash})"));
        }
        return Ok(Ingested { activity: None, stages: processed.reports });
    }
    let activity = Activity {
        id: ActivityId::new_random(),
        app: item.app,
        title: item.title,
        body: item.text,
        content_hash: hash,
        occurred_at: now,
    };
    tx.conn()
        .execute(stmt(
            tx,
            "INSERT INTO activity (id, tenant_id, user_id, app, title, body, content_hash, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                activity.id.into(),
                tx.tenant().0.into(),
                tx.user().0.into(),
                activity.app.clone().into(),
                activity.title.clone().into(),
                activity.body.clone().into(),
                activity.content_hash.clone().into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(Ingested { activity: Some(activity), stages: processed.reports })
}

/// One allowed capture window, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowSpec {
    /// `mon` … `sun`.
    pub days: Vec<String>,
    /// `HH:MM`, local time, inclusive.
    pub start: String,
    /// `HH:MM`, local time, exclusive; not after `start` means the window runs past midnight.
    pub end: String,
}

/// The principal's allowed capture windows in this workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows {
    pub utc_offset_minutes: i32,
    /// Empty: capture is always allowed.
    pub windows: Vec<WindowSpec>,
}

const DAYS: [(&str, chrono::Weekday); 7] = [
    ("mon", chrono::Weekday::Mon),
    ("tue", chrono::Weekday::Tue),
    ("wed", chrono::Weekday::Wed),
    ("thu", chrono::Weekday::Thu),
    ("fri", chrono::Weekday::Fri),
    ("sat", chrono::Weekday::Sat),
    ("sun", chrono::Weekday::Sun),
];

fn schedule_of(w: &Windows) -> Result<pii::pipeline::Schedule, TenancyError> {
    // UTC-14:00 to UTC+14:00, the range of real time zones (and of the table's CHECK).
    if !(-840..=840).contains(&w.utc_offset_minutes) {
        return Err(TenancyError::Invalid("utc_offset_minutes is between -840 and 840"));
    }
    let offset = chrono::FixedOffset::east_opt(w.utc_offset_minutes * 60)
        .ok_or(TenancyError::Invalid("utc_offset_minutes is between -840 and 840"))?;
    let mut windows = Vec::new();
    for spec in &w.windows {
        let mut days = Vec::new();
        for d in &spec.days {
            let day = DAYS.iter().find(|(name, _)| name == d).ok_or(TenancyError::Invalid("days are mon … sun"))?.1;
            days.push(day);
        }
        if days.is_empty() {
            return Err(TenancyError::Invalid("a window needs at least one day"));
        }
        let time = |t: &str| {
            chrono::NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| TenancyError::Invalid("times are HH:MM"))
        };
        windows.push(pii::pipeline::Window {
            days: pii::pipeline::Days::of(&days),
            start: time(&spec.start)?,
            end: time(&spec.end)?,
        });
    }
    Ok(pii::pipeline::Schedule { offset, windows })
}

/// The principal's windows (always allowed when none are set).
pub async fn get_windows(tx: &TenantTx) -> Result<Windows, TenancyError> {
    require_own(tx)?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            "SELECT utc_offset_minutes, windows FROM activity_windows WHERE tenant_id = $1 AND user_id = $2",
            vec![tx.tenant().0.into(), tx.user().0.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(Windows { utc_offset_minutes: 0, windows: Vec::new() });
    };
    let text: String = row.try_get("", "windows")?;
    Ok(Windows {
        utc_offset_minutes: row.try_get("", "utc_offset_minutes")?,
        windows: serde_json::from_str(&text)
            .map_err(|_| TenancyError::Internal("stored windows are not JSON".into()))?,
    })
}

async fn windows(tx: &TenantTx) -> Result<pii::pipeline::Schedule, TenancyError> {
    schedule_of(&get_windows(tx).await?)
}

/// Sets the principal's windows (at most 20), checked before they are stored.
pub async fn set_windows(tx: &TenantTx, windows: Windows, now: DateTime<Utc>) -> Result<Windows, TenancyError> {
    require_own(tx)?;
    if windows.windows.len() > 20 {
        return Err(TenancyError::Invalid("at most 20 windows"));
    }
    schedule_of(&windows)?;
    let text = serde_json::to_string(&windows.windows).map_err(|e| TenancyError::Internal(e.to_string()))?;
    tx.conn()
        .execute(stmt(
            tx,
            "INSERT INTO activity_windows (tenant_id, user_id, utc_offset_minutes, windows, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET utc_offset_minutes = excluded.utc_offset_minutes,
                 windows = excluded.windows, updated_at = excluded.updated_at",
            vec![tx.tenant().0.into(), tx.user().0.into(), windows.utc_offset_minutes.into(), text.into(), now.into()],
        ))
        .await?;
    Ok(windows)
}

/// The principal's newest `limit` records in this workspace.
pub async fn list_own(tx: &TenantTx, limit: u64) -> Result<Vec<Activity>, TenancyError> {
    require_own(tx)?;
    let rows = tx
        .conn()
        .query_all(stmt(
            tx,
            &format!(
                "SELECT {COLUMNS} FROM activity WHERE tenant_id = $1 AND user_id = $2 ORDER BY occurred_at DESC, id LIMIT $3"
            ),
            vec![tx.tenant().0.into(), tx.user().0.into(), limit.clamp(1, 200).into()],
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

/// One of the principal's records; anyone else's is `NotFound`.
pub async fn get_own(tx: &TenantTx, id: ActivityId) -> Result<Activity, TenancyError> {
    require_own(tx)?;
    let row = tx
        .conn()
        .query_one(stmt(
            tx,
            &format!("SELECT {COLUMNS} FROM activity WHERE id = $1 AND tenant_id = $2 AND user_id = $3"),
            vec![id.into(), tx.tenant().0.into(), tx.user().0.into()],
        ))
        .await?
        .ok_or(TenancyError::NotFound)?;
    from_row(&row)
}

/// Deletes one of the principal's records; anyone else's is `NotFound`.
pub async fn delete_own(tx: &TenantTx, id: ActivityId) -> Result<(), TenancyError> {
    require_own(tx)?;
    let done = tx
        .conn()
        .execute(stmt(
            tx,
            "DELETE FROM activity WHERE id = $1 AND tenant_id = $2 AND user_id = $3",
            vec![id.into(), tx.tenant().0.into(), tx.user().0.into()],
        ))
        .await?;
    if done.rows_affected() == 0 {
        return Err(TenancyError::NotFound);
    }
    Ok(())
}
