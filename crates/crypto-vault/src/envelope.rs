//! The envelope format of secrets at rest: a value is sealed with its tenant's data key for one
//! purpose, and the data key is itself sealed ("wrapped") by a key-encryption key that lives
//! outside the database ([`crate::KeyProvider`]).
//!
//! A sealed value is binary:
//!
//! ```text
//! byte 0      format version (2; version 1 is the outbox's text format, `seal::seal`)
//! byte 1      purpose code (Purpose::code)
//! bytes 2..6  data key version, big-endian u32 — with the purpose, the key id within the tenant
//! bytes 6..18 96-bit random nonce
//! bytes 18..  AES-256-GCM ciphertext followed by its 128-bit tag
//! ```
//!
//! The associated data is the header (bytes 0..6) followed by the value's place — tenant, row id,
//! table and column — so a ciphertext copied to another row, column or tenant, or relabelled
//! with another key version, does not open.

use aes_gcm::{
    aead::{AeadInPlace, KeyInit},
    Aes256Gcm, Nonce, Tag,
};
use uuid::Uuid;

use crate::{KeyMaterial, VaultError};

/// Format version of an enveloped value (byte 0).
pub const ENVELOPE_VERSION: u8 = 2;
/// Header length: version, purpose, key version.
pub const HEADER_LEN: usize = 6;
/// 96-bit random nonces, the length GCM is specified for (NIST SP 800-38D §8.2.2). With random
/// nonces one key may seal at most 2^32 values; data keys are per tenant and purpose and rotate.
pub const NONCE_LEN: usize = 12;
/// The full 128-bit GCM tag (NIST SP 800-38D §5.2.1.2; shorter tags weaken forgery resistance).
pub const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// What a key protects. Each purpose has its own key-encryption key and its own data keys, so a
/// key of one purpose never opens a value of another (NIST SP 800-57 Part 1 Rev. 5, §5.2: one
/// key, one purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// OAuth access and refresh tokens and bot tokens of connectors (Slack, Google).
    IntegrationTokens,
    /// Object-storage credentials (S3, R2, GCS, Firebase).
    StorageCredentials,
    /// Personal data kept encrypted at rest.
    PersonalData,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Purpose::IntegrationTokens, Purpose::StorageCredentials, Purpose::PersonalData];

    /// The byte that names the purpose in an envelope header.
    pub fn code(self) -> u8 {
        match self {
            Purpose::IntegrationTokens => 1,
            Purpose::StorageCredentials => 2,
            Purpose::PersonalData => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.code() == code)
    }

    /// The name stored in the database and used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::IntegrationTokens => "integration_tokens",
            Purpose::StorageCredentials => "storage_credentials",
            Purpose::PersonalData => "personal_data",
        }
    }

    pub fn parse(name: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a sealed value lives: it opens only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    pub tenant: Uuid,
    pub table: &'a str,
    pub column: &'a str,
    pub row: Uuid,
}

/// The key a sealed value names in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub purpose: Purpose,
    pub version: u32,
}

impl Header {
    /// Reads the header of a sealed value without opening it (to find the key it needs).
    pub fn parse(sealed: &[u8]) -> Result<Header, VaultError> {
        if sealed.len() < OVERHEAD || sealed[0] != ENVELOPE_VERSION {
            return Err(VaultError::Malformed);
        }
        let purpose = Purpose::from_code(sealed[1]).ok_or(VaultError::Malformed)?;
        let version = u32::from_be_bytes([sealed[2], sealed[3], sealed[4], sealed[5]]);
        if version == 0 {
            return Err(VaultError::Malformed);
        }
        Ok(Header { purpose, version })
    }

    fn bytes(self) -> [u8; HEADER_LEN] {
        let v = self.version.to_be_bytes();
        [ENVELOPE_VERSION, self.purpose.code(), v[0], v[1], v[2], v[3]]
    }
}

/// One tenant's unwrapped data key of one purpose and version, ready to seal and open. The AES
/// key schedule is zeroized on drop (the `aes` crate's `zeroize` feature); `Debug` shows only
/// the key's name.
pub struct DataKey {
    tenant: Uuid,
    header: Header,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("tenant", &self.tenant)
            .field("purpose", &self.header.purpose)
            .field("version", &self.header.version)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    pub fn new(tenant: Uuid, purpose: Purpose, version: u32, key: &KeyMaterial) -> Result<DataKey, VaultError> {
        if version == 0 {
            return Err(VaultError::Malformed);
        }
        let cipher = Aes256Gcm::new_from_slice(key.expose()).map_err(|_| VaultError::Crypto)?;
        Ok(DataKey { tenant, header: Header { purpose, version }, cipher })
    }

    pub fn tenant(&self) -> Uuid {
        self.tenant
    }

    pub fn purpose(&self) -> Purpose {
        self.header.purpose
    }

    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Seals `plaintext` for `place`, which must belong to this key's tenant.
    pub fn seal(&self, place: &Place<'_>, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        if place.tenant != self.tenant {
            return Err(VaultError::WrongKey);
        }
        let mut nonce = [0u8; NONCE_LEN];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut nonce);
        let header = self.header.bytes();
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let aad = associated_data(&header, place);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut out[HEADER_LEN + NONCE_LEN..])
            .map_err(|_| VaultError::Crypto)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a value sealed for `place` by this key. Any changed byte, another place or another
    /// key fails with [`VaultError::Crypto`] (or [`VaultError::WrongKey`] when the header names
    /// another key), and nothing of the plaintext is returned.
    pub fn open(&self, place: &Place<'_>, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, VaultError> {
        let header = Header::parse(sealed)?;
        if header != self.header || place.tenant != self.tenant {
            return Err(VaultError::WrongKey);
        }
        let (head, rest) = sealed.split_at(HEADER_LEN);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
        let aad = associated_data(head, place);
        let mut plaintext = zeroize::Zeroizing::new(ciphertext.to_vec());
        self.cipher
            .decrypt_in_place_detached(Nonce::from_slice(nonce), &aad, &mut plaintext, Tag::from_slice(tag))
            .map_err(|_| VaultError::Crypto)?;
        Ok(plaintext)
    }
}

/// Header, then the place as fixed-width ids and length-prefixed names (no two places encode
/// alike).
fn associated_data(header: &[u8], place: &Place<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 32 + 4 + place.table.len() + place.column.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(place.tenant.as_bytes());
    aad.extend_from_slice(place.row.as_bytes());
    for name in [place.table, place.column] {
        aad.extend_from_slice(&(name.len() as u16).to_be_bytes());
        aad.extend_from_slice(name.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(tenant: Uuid, row: Uuid) -> Place<'static> {
        Place { tenant, table: "connections", column: "secret_ciphertext", row }
    }

    fn key(tenant: Uuid, version: u32) -> DataKey {
        DataKey::new(tenant, Purpose::IntegrationTokens, version, &KeyMaterial::generate()).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_at_its_place_and_carries_its_key_name() {
        let tenant = Uuid::new_v4();
        let k = key(tenant, 7);
        let at = place(tenant, Uuid::new_v4());
        let sealed = k.seal(&at, b"xoxb-123-secret").unwrap();
        assert_eq!(sealed.len(), b"xoxb-123-secret".len() + OVERHEAD);
        assert_eq!(Header::parse(&sealed).unwrap(), Header { purpose: Purpose::IntegrationTokens, version: 7 });
        assert_eq!(k.open(&at, &sealed).unwrap().as_slice(), b"xoxb-123-secret");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        // Two seals of the same value differ (random nonce).
        assert_ne!(k.seal(&at, b"xoxb-123-secret").unwrap(), sealed);
    }

    #[test]
    fn every_changed_byte_fails_to_open() {
        let tenant = Uuid::new_v4();
        let k = key(tenant, 1);
        let at = place(tenant, Uuid::new_v4());
        let sealed = k.seal(&at, &[0x5a; 256]).unwrap();
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(k.open(&at, &tampered).is_err(), "byte {i} flipped still opened");
        }
        assert_eq!(k.open(&at, &sealed[..sealed.len() - 1]).unwrap_err(), VaultError::Crypto);
        assert_eq!(k.open(&at, &sealed[..OVERHEAD - 1]).unwrap_err(), VaultError::Malformed);
    }

    #[test]
    fn another_row_column_table_or_tenant_does_not_open_the_value() {
        let tenant = Uuid::new_v4();
        let k = key(tenant, 1);
        let at = place(tenant, Uuid::new_v4());
        let sealed = k.seal(&at, b"secret").unwrap();
        let other_row = Place { row: Uuid::new_v4(), ..at };
        let other_column = Place { column: "config", ..at };
        let other_table = Place { table: "webhooks", ..at };
        for wrong in [other_row, other_column, other_table] {
            assert_eq!(k.open(&wrong, &sealed).unwrap_err(), VaultError::Crypto, "{wrong:?}");
        }
        let other_tenant = Place { tenant: Uuid::new_v4(), ..at };
        assert_eq!(k.open(&other_tenant, &sealed).unwrap_err(), VaultError::WrongKey);
        // The other tenant's own key with a forged tenant check still fails on the data.
        let theirs =
            DataKey::new(other_tenant.tenant, Purpose::IntegrationTokens, 1, &KeyMaterial::generate()).unwrap();
        assert!(theirs.open(&other_tenant, &sealed).is_err());
        assert_eq!(k.seal(&other_tenant, b"x").unwrap_err(), VaultError::WrongKey);
    }

    #[test]
    fn a_relabelled_key_version_or_purpose_does_not_open() {
        let tenant = Uuid::new_v4();
        let material = KeyMaterial::generate();
        let v1 = DataKey::new(tenant, Purpose::IntegrationTokens, 1, &material).unwrap();
        let v2_same_bytes = DataKey::new(tenant, Purpose::IntegrationTokens, 2, &material).unwrap();
        let other_purpose = DataKey::new(tenant, Purpose::StorageCredentials, 1, &material).unwrap();
        let at = place(tenant, Uuid::new_v4());
        let mut sealed = v1.seal(&at, b"secret").unwrap();
        assert_eq!(v2_same_bytes.open(&at, &sealed).unwrap_err(), VaultError::WrongKey);
        assert_eq!(other_purpose.open(&at, &sealed).unwrap_err(), VaultError::WrongKey);
        // Rewriting the header to match the other key: the associated data no longer matches.
        sealed[5] = 2;
        assert_eq!(v2_same_bytes.open(&at, &sealed).unwrap_err(), VaultError::Crypto);
    }

    #[test]
    fn debug_output_names_the_key_without_its_bytes() {
        let printed = format!("{:?}", key(Uuid::nil(), 3));
        assert!(
            printed.starts_with(
                "DataKey { tenant: 00000000-0000-0000-0000-000000000000, purpose: IntegrationTokens, version: 3"
            ),
            "{printed}"
        );
        assert!(!printed.contains("cipher"), "{printed}");
    }

    #[test]
    fn purposes_round_trip_through_code_and_name() {
        for p in Purpose::ALL {
            assert_eq!(Purpose::from_code(p.code()), Some(p));
            assert_eq!(Purpose::parse(p.as_str()), Some(p));
        }
        assert_eq!(Purpose::from_code(0), None);
        assert_eq!(Purpose::parse("tokens"), None);
    }
}
