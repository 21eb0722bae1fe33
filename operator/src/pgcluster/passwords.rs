//! Generated credentials. Kept apart from the builders so that they stay pure: the
//! controller generates a [`Passwords`] only when a Secret is absent.

/// Length of generated passwords: 32 alphanumerics are about 190 bits of entropy, and
/// contain nothing that needs quoting in a connection string, a pgpass file or SQL.
pub const PASSWORD_LEN: usize = 32;

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Every password a cluster needs. Debug is redacted so a stray `{:?}` cannot log them.
#[derive(Clone, PartialEq, Eq)]
pub struct Passwords {
    pub superuser: String,
    pub replication: String,
    pub app: String,
    pub redis: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords { <redacted> }")
    }
}

impl Passwords {
    /// Fresh passwords from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(Self {
            superuser: generate_password()?,
            replication: generate_password()?,
            app: generate_password()?,
            redis: generate_password()?,
        })
    }
}

/// One password of [`PASSWORD_LEN`] alphanumerics, uniformly distributed: bytes at or above
/// the largest multiple of 62 are rejected rather than folded, which would bias the result.
pub fn generate_password() -> Result<String, getrandom::Error> {
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut password = String::with_capacity(PASSWORD_LEN);
    let mut buffer = [0u8; 64];
    while password.len() < PASSWORD_LEN {
        getrandom::fill(&mut buffer)?;
        for byte in buffer.iter().filter(|b| **b < limit) {
            if password.len() == PASSWORD_LEN {
                break;
            }
            password.push(ALPHABET[usize::from(*byte) % ALPHABET.len()] as char);
        }
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_alphanumeric_and_distinct() {
        let passwords = Passwords::generate().unwrap();
        let all = [&passwords.superuser, &passwords.replication, &passwords.app, &passwords.redis];
        for password in all {
            assert_eq!(password.len(), PASSWORD_LEN);
            assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        }
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn debug_never_shows_a_password() {
        let passwords = Passwords::generate().unwrap();
        let debug = format!("{passwords:?}");
        assert!(!debug.contains(&passwords.superuser));
        assert!(debug.contains("redacted"));
    }
}
