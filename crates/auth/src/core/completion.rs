//! The last step every sign-in shares, whatever its factors (a password, a provider, a second
//! factor): open the session or issue the token family, and record the sign-in.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::core::authentication::Authentication;
use crate::core::context::Core;
use crate::core::error::AuthError;
use crate::core::events;
use crate::core::families::{FamilyTurn, TokenPair};
use crate::core::sessions::NewSession;
use crate::core::settings::RequestMeta;

impl Core {
    /// Opens the session of a user who passed every factor (`methods`, RFC 8176 values) and
    /// records the sign-in. `at` is when they authenticated: now for a factor checked here, the
    /// provider's `auth_time` for a provider's sign-in (`None` when it did not say, so a silent
    /// single sign-on never counts as a recent authentication).
    pub(crate) async fn finish_sign_in(
        &self,
        user: Uuid,
        meta: &RequestMeta,
        methods: &[&str],
        at: Option<DateTime<Utc>>,
    ) -> Result<NewSession, AuthError> {
        let session = self.open_session(user, meta, at, methods).await?;
        let txn = self.db.begin_write().await?;
        self.record_event(
            &txn,
            events::SIGNIN_SUCCEEDED,
            Some(user),
            meta,
            serde_json::json!({"session": session.record.id, "amr": methods}),
        )
        .await?;
        txn.commit().await?;
        Ok(session)
    }

    /// Issues the token family of a user who passed every factor (`methods`, RFC 8176 values),
    /// and records the sign-in; `at` as for [`Core::finish_sign_in`].
    pub(crate) async fn finish_password_grant(
        &self,
        user: Uuid,
        meta: &RequestMeta,
        methods: &[&str],
        at: Option<DateTime<Utc>>,
    ) -> Result<TokenPair, AuthError> {
        let txn = self.db.begin_write().await?;
        let turn = FamilyTurn {
            family: Uuid::new_v4(),
            began: self.clock.now(),
            generation: Core::active_generation_on(&txn, user).await?,
            authentication: at.map(|at| Authentication::new(at, methods)),
        };
        let pair = self.issue_pair(&txn, user, &turn, meta).await?;
        self.record_event(
            &txn,
            events::SIGNIN_SUCCEEDED,
            Some(user),
            meta,
            serde_json::json!({"token_family": pair.family, "amr": methods}),
        )
        .await?;
        txn.commit().await?;
        Ok(pair)
    }
}
