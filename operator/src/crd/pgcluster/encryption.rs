//! `spec.backup.encryption` of a PgCluster: pgBackRest's repository encryption (aes-256-cbc).
//!
//! Chosen when the repository is created and never changed after: pgBackRest cannot
//! encrypt or decrypt a repository that already holds backups.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::crd::common::DNS_SUBDOMAIN_PATTERN;
use crate::protocol::names;

/// Key of the passphrase in the cipher Secret, generated or the user's.
pub const PASSPHRASE_KEY: &str = "passphrase";

/// Encryption of the pgBackRest repository with a passphrase from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupEncryptionSpec {
    /// Encrypt every file pgBackRest writes to the repository (aes-256-cbc).
    #[serde(default)]
    pub enabled: bool,

    /// A Secret of yours with the key `passphrase`. Unset: relevo generates one into
    /// `<cluster>-pgbackrest-cipher`, which deleting the cluster keeps. Losing the passphrase
    /// loses every backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(max = 253))]
    pub passphrase_secret: Option<String>,
}

/// Absent encryption and an encryption that is off must compare equal in the transition rule
/// of [`super::ClusterBackupSpec`], so it compares what is in effect.
pub const ENCRYPTION_KEPT: &str = "(has(self.encryption) && self.encryption.enabled) == \
     (has(oldSelf.encryption) && oldSelf.encryption.enabled) && \
     (has(self.encryption) && has(self.encryption.passphraseSecret) ? self.encryption.passphraseSecret : '') == \
     (has(oldSelf.encryption) && has(oldSelf.encryption.passphraseSecret) ? oldSelf.encryption.passphraseSecret : '')";
pub const ENCRYPTION_KEPT_MESSAGE: &str =
    "backup.encryption is immutable: a repository is encrypted, or not, from its creation";

/// The Secret holding the passphrase of an encrypted repository, `None` when unencrypted.
pub fn cipher_secret(cluster: &str, encryption: Option<&BackupEncryptionSpec>) -> Option<String> {
    let encryption = encryption.filter(|e| e.enabled)?;
    Some(encryption.passphrase_secret.clone().unwrap_or_else(|| names::secret_pgbackrest_cipher(cluster)))
}

/// Whether relevo generates the passphrase Secret (encrypted, and no Secret of the user's).
pub fn generates_cipher_secret(encryption: Option<&BackupEncryptionSpec>) -> bool {
    encryption.is_some_and(|e| e.enabled && e.passphrase_secret.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(enabled: bool, secret: Option<&str>) -> BackupEncryptionSpec {
        BackupEncryptionSpec { enabled, passphrase_secret: secret.map(String::from) }
    }

    #[test]
    fn the_passphrase_secret_is_the_users_or_the_generated_one_and_only_when_enabled() {
        assert_eq!(cipher_secret("demo", None), None);
        assert_eq!(cipher_secret("demo", Some(&spec(false, Some("mine")))), None);
        assert_eq!(cipher_secret("demo", Some(&spec(true, None))).as_deref(), Some("demo-pgbackrest-cipher"));
        assert_eq!(cipher_secret("demo", Some(&spec(true, Some("mine")))).as_deref(), Some("mine"));
        assert!(generates_cipher_secret(Some(&spec(true, None))));
        assert!(!generates_cipher_secret(Some(&spec(true, Some("mine")))));
        assert!(!generates_cipher_secret(Some(&spec(false, None))));
        assert!(!generates_cipher_secret(None));
    }
}
