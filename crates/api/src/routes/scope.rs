//! One request's work on one workspace: a tenant transaction for the caller, committed on
//! success; on an authorization failure the transaction is rolled back and the refusal recorded
//! (endpoint, user, required and actual role or permission) in a transaction of its own.

use crate::codes::ErrorCode;
use poem::Request;
use tenancy::{authz, TenancyError, TenantTx, UserId, WorkspaceId};

use crate::{error::ApiError, principal::Principal, AppState};

pub(crate) struct Scope<'a> {
    pub state: &'a AppState,
    pub tenant: WorkspaceId,
    pub user: UserId,
    endpoint: String,
    /// A `GET` or `HEAD`: the transaction only reads, beside the store's writer.
    read_only: bool,
    /// An API key's one workspace and scopes.
    api_key: Option<auth::api_keys::KeyGrant>,
    /// A workspace-bound token's one workspace and scope.
    binding: Option<crate::principal::Binding>,
    /// The user's sign-in included a second factor; for an API key, its creator has one set up
    /// (or the workspace does not require one).
    second_factor: bool,
}

/// How many times a tenant transaction that lost a race (a deadlock, a serialization failure, a
/// busy store) is run from the start before the loser is answered 503 with `Retry-After`. Its
/// work is safe to repeat: the failed run rolled back whole, and side effects leave only through
/// the outbox in the same transaction.
const CONTENTION_ATTEMPTS: u32 = 3;

/// Runs a piece of work in a tenant transaction of a workspace for the caller, in a handler:
///
/// ```ignore
/// let project = scoped!(state, req, auth.principal(), workspace_id.0, |tx| projects::get(tx, id).await)?;
/// ```
///
/// It opens the transaction (read-only for `GET`/`HEAD`) with the caller's access, evaluates the
/// work with `tx: &TenantTx` (an expression that may `.await` and use `?` on `TenancyError`), and
/// settles: commits, or rolls back and records an authorization refusal, answering the error. A
/// run that lost a race with another transaction is evaluated again from the start, up to
/// [`CONTENTION_ATTEMPTS`] runs in all, after a short random pause. The value is
/// `poem::Result<T>`.
macro_rules! scoped {
    ($state:expr, $req:expr, $principal:expr, $workspace:expr, |$tx:ident| $work:expr) => {{
        let scope = $crate::routes::scope::Scope::new(&$state, $req, $principal, $workspace);
        let mut runs = $crate::routes::scope::Runs::default();
        loop {
            let tx = match scope.begin().await {
                Ok(tx) => tx,
                Err(err) => break Err(err),
            };
            #[allow(unused_braces)]
            let result = $crate::routes::scope::work(async {
                let $tx = &tx;
                $work
            })
            .await;
            if let Some(answer) = runs.settle(&scope, tx, result).await {
                break answer;
            }
        }
    }};
}
pub(crate) use scoped;

/// Pins a scoped piece of work's output to `Result<T, TenancyError>`, so `?` inside it converts.
pub(crate) fn work<T, F: std::future::Future<Output = Result<T, TenancyError>>>(f: F) -> F {
    f
}

/// The runs of one scoped piece of work.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    done: u32,
}

impl Runs {
    /// Settles one run: `None` when it lost a race and may run again (after a pause), else the
    /// answer.
    pub(crate) async fn settle<T>(
        &mut self,
        scope: &Scope<'_>,
        tx: TenantTx,
        result: Result<T, TenancyError>,
    ) -> Option<poem::Result<T>> {
        self.done += 1;
        match scope.settle(tx, result).await {
            Ok(value) => Some(Ok(value)),
            Err(failed) if self.done < CONTENTION_ATTEMPTS && contended(&failed) => {
                tracing::info!(run = self.done, error = %failed, "tenant transaction lost a race; running it again");
                tokio::time::sleep(backoff(self.done)).await;
                None
            }
            Err(failed) => Some(Err(scope.refused(failed).await)),
        }
    }
}

/// A refusal and the caller's role in the workspace, as the transaction saw it.
struct Failed(TenancyError, Option<String>);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn contended(err: &Failed) -> bool {
    matches!(&err.0, TenancyError::Db(db) if storage::fault(db) == Some(storage::Fault::Contention))
}

/// 10–40 ms times the attempt, with full jitter, so two losers do not collide again in step.
fn backoff(attempt: u32) -> std::time::Duration {
    use rand::Rng;
    std::time::Duration::from_millis(rand::thread_rng().gen_range(10..=40) * u64::from(attempt))
}

impl<'a> Scope<'a> {
    pub fn new(state: &'a AppState, req: &Request, principal: &Principal, workspace: WorkspaceId) -> Scope<'a> {
        Scope {
            state,
            tenant: workspace,
            user: principal.user_id,
            endpoint: format!("{} {}", req.method(), req.uri().path()),
            read_only: matches!(*req.method(), poem::http::Method::GET | poem::http::Method::HEAD),
            api_key: principal.api_key.clone(),
            binding: principal.binding.clone(),
            second_factor: match &principal.api_key {
                // A key keeps to the rule through its creator: held while they have no factor.
                Some(key) => !key.held_by_mfa_rule,
                None => principal.has_second_factor(),
            },
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.state.auth.now()
    }

    /// Begins the transaction: tenant context and the caller's access in one round trip.
    /// Audit events written in it carry the request id.
    /// An API key reaches only its own workspace (any other is not found) and only within its
    /// scopes and its creator's current role.
    pub async fn begin(&self) -> poem::Result<TenantTx> {
        if self.api_key.as_ref().is_some_and(|key| key.tenant != self.tenant)
            || self.binding.as_ref().is_some_and(|b| b.workspace != self.tenant)
        {
            return Err(ApiError::from(TenancyError::NotFound).into());
        }
        let (db, tenant, user) = (&self.state.db, self.tenant, self.user);
        let opened = if self.read_only {
            TenantTx::begin_read(db, tenant, user).await
        } else {
            TenantTx::begin(db, tenant, user).await
        };
        let mut tx = opened.map_err(ApiError::from)?;
        // The requirement came with the access, in the same statement.
        let required = tx.access().is_some_and(|access| access.require_mfa);
        if !self.second_factor && (required || self.api_key.is_some()) {
            let _ = tx.rollback().await;
            let message = if self.api_key.is_some() {
                "This workspace requires a second factor: the key's creator must set one up."
            } else {
                "This workspace requires a second factor: set one up and sign in with it."
            };
            return Err(ApiError::new(ErrorCode::WorkspaceRequiresMfa, message).into());
        }
        if let Some(key) = &self.api_key {
            tx.restrict(&key.scopes);
        }
        if let Some(scopes) = self.binding.as_ref().and_then(|b| b.scopes.as_ref()) {
            tx.restrict(scopes);
        }
        tx.set_request_id(crate::error::current_request_id());
        Ok(tx)
    }

    /// Records `failed` if it was an authorization failure, and answers it.
    async fn refused(&self, Failed(err, actual): Failed) -> poem::Error {
        self.refuse(&err, actual).await;
        ApiError::from(err).into()
    }

    /// Commits on success, rolls back on failure; a failure keeps the caller's role for the record.
    async fn settle<T>(&self, tx: TenantTx, result: Result<T, TenancyError>) -> Result<T, Failed> {
        let actual = tx.access().map(|a| a.role.name.clone());
        tx.settle(result).await.map_err(|err| Failed(err, actual))
    }

    /// Records `err` if it is an authorization failure inside the workspace (a missing permission
    /// or level). An attempt on a workspace the caller cannot reach is logged only: storing it in
    /// that workspace's records would let any user fill them, and its timing would tell whether
    /// the workspace exists.
    async fn refuse(&self, err: &TenancyError, actual: Option<String>) {
        use rbac::RbacError as R;
        let (required, actual) = match (err, actual) {
            (TenancyError::NotFound, None) => {
                tracing::warn!(
                    authz.endpoint = %self.endpoint,
                    authz.required = "membership",
                    authz.actual = "none",
                    user.id = %self.user.0,
                    tenant.id = %self.tenant.0,
                    "authorization failure: workspace not reachable"
                );
                return;
            }
            (TenancyError::Forbidden(R::MissingPermission { required, role }), _) => {
                (required.to_string(), role.clone())
            }
            (TenancyError::Forbidden(R::LevelTooHigh { required_level, actual_level }), _) => {
                (format!("level {required_level}"), format!("level {actual_level}"))
            }
            (TenancyError::Forbidden(R::Escalation { permission }), Some(role)) => (permission.to_string(), role),
            _ => return,
        };
        let request_id = crate::error::current_request_id();
        tracing::warn!(
            authz.endpoint = %self.endpoint,
            authz.required = %required,
            authz.actual = %actual,
            user.id = %self.user.0,
            tenant.id = %self.tenant.0,
            "authorization failure"
        );
        let refusal = authz::Refusal { endpoint: &self.endpoint, required, actual, request_id: &request_id };
        if let Err(e) = authz::record(&self.state.db, self.tenant, self.user, &refusal, self.now()).await {
            // A workspace that does not exist has nowhere to keep the record; the log line stays.
            tracing::debug!(error = %e, "authorization failure not stored");
        }
    }
}
