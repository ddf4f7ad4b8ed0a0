//! Entity ids: one newtype per entity (`WorkspaceId`, `ProjectId`, `UserId`, …), so a workspace
//! id passed where a project id belongs does not compile. Each is a UUID on the wire and in the
//! database: serde writes it as the UUID string, sea-orm binds and reads it as the UUID it wraps,
//! and with the `openapi` feature it is a poem-openapi path, query and body type described
//! exactly as a UUID (`type: string, format: uuid`), so the API description does not change.
//!
//! This crate owns the id types and nothing else: it never reads a database, never knows HTTP
//! beyond the optional description traits, and never depends on another Rampart crate.

use std::fmt;
use std::str::FromStr;

pub use uuid::Uuid;

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sea_orm::DeriveValueType,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random id (UUID version 4).
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The UUID it wraps.
            pub const fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::from_str(s).map(Self)
            }
        }

        #[cfg(feature = "openapi")]
        openapi_impls!($name);
    )*};
}

/// The description traits, delegated to `Uuid` so the schema is exactly a UUID's.
#[cfg(feature = "openapi")]
macro_rules! openapi_impls {
    ($name:ident) => {
        impl poem_openapi::types::Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Uuid;
            type RawElementValueType = Uuid;

            fn name() -> std::borrow::Cow<'static, str> {
                <Uuid as poem_openapi::types::Type>::name()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                <Uuid as poem_openapi::types::Type>::schema_ref()
            }

            fn as_raw_value(&self) -> Option<&Uuid> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Uuid> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl poem_openapi::types::ParseFromJSON for $name {
            fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
                <Uuid as poem_openapi::types::ParseFromJSON>::parse_from_json(value)
                    .map(Self)
                    .map_err(poem_openapi::types::ParseError::propagate)
            }
        }

        impl poem_openapi::types::ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> poem_openapi::types::ParseResult<Self> {
                <Uuid as poem_openapi::types::ParseFromParameter>::parse_from_parameter(value)
                    .map(Self)
                    .map_err(poem_openapi::types::ParseError::propagate)
            }
        }

        impl poem_openapi::types::ToJSON for $name {
            fn to_json(&self) -> Option<serde_json::Value> {
                <Uuid as poem_openapi::types::ToJSON>::to_json(&self.0)
            }
        }
    };
}

ids! {
    /// A workspace: the tenant every row of tenant data belongs to.
    WorkspaceId;
    /// A user account.
    UserId;
    /// A project, the example domain's record.
    ProjectId;
    /// An activity record.
    ActivityId;
    /// A workspace's connection to an external provider.
    ConnectionId;
    /// An invitation to a workspace.
    InvitationId;
    /// A grant of access to a workspace's data for someone who is not a member.
    GrantId;
    /// A role of a workspace.
    RoleId;
    /// A workspace API key.
    ApiKeyId;
    /// An outbound webhook endpoint.
    EndpointId;
    /// An inbound webhook source.
    SourceId;
    /// One outbound webhook delivery (a message to an endpoint and its attempts).
    DeliveryId;
    /// A browser session or a token family, as the sessions list names them.
    SessionId;
    /// An identity at an external sign-in provider, linked to an account.
    IdentityId;
    /// A refresh-token family: one sign-in's chain of refresh tokens.
    FamilyId;
    /// An outbox action.
    ActionId;
    /// An audit event.
    EventId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_uuid_string_in_json_and_in_text() {
        let uuid = Uuid::new_v4();
        let id = ProjectId(uuid);
        assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(uuid.to_string()));
        assert_eq!(serde_json::from_value::<ProjectId>(serde_json::json!(uuid.to_string())).unwrap(), id);
        assert_eq!(id.to_string(), uuid.to_string());
        assert_eq!(uuid.to_string().parse::<ProjectId>().unwrap(), id);
        assert!("not-a-uuid".parse::<ProjectId>().is_err());
    }

    #[test]
    fn an_id_binds_as_the_uuid_it_wraps() {
        let uuid = Uuid::new_v4();
        assert_eq!(sea_orm::Value::from(WorkspaceId(uuid)), sea_orm::Value::from(uuid));
    }

    #[cfg(feature = "openapi")]
    #[test]
    fn an_id_is_described_exactly_as_a_uuid() {
        use poem_openapi::types::{ParseFromParameter, Type};
        assert_eq!(
            serde_json::to_value(UserId::schema_ref()).unwrap(),
            serde_json::to_value(Uuid::schema_ref()).unwrap()
        );
        assert_eq!(UserId::name(), Uuid::name());
        assert!(UserId::parse_from_parameter("nope").is_err());
    }
}
