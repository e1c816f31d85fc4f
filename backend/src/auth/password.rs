//! Password hashing: argon2id (19 MiB, 2 passes, 1 lane — the OWASP recommendation) in PHC
//! string form, computed off the async threads since each hash takes tens of milliseconds.

use std::sync::LazyLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::AuthError;

/// The shortest password accepted, in characters.
pub const MIN_LENGTH: usize = 12;
/// The longest password accepted, in characters (a bound on the work one sign-in can cause).
pub const MAX_LENGTH: usize = 1024;

fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// A hash of a random password, verified against when a sign-in names no existing account, so
/// that an unknown name costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_blocking(&super::new_secret()).expect("hashing a random password works"));

/// Checks the length rule.
pub fn validate(password: &str) -> Result<(), AuthError> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(AuthError::Invalid(format!(
            "a password needs at least {MIN_LENGTH} characters"
        )));
    }
    if length > MAX_LENGTH {
        return Err(AuthError::Invalid(format!(
            "a password may have at most {MAX_LENGTH} characters"
        )));
    }
    Ok(())
}

fn hash_blocking(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| AuthError::Hashing(err.to_string()))
}

fn verify_blocking(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(err) => {
            tracing::error!(%err, "a stored password hash does not parse");
            false
        }
    }
}

/// Validates and hashes a new password.
pub async fn hash(password: &str) -> Result<String, AuthError> {
    validate(password)?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|err| AuthError::Hashing(err.to_string()))?
}

/// Whether `password` matches `hash`; with no hash (no such account) the work is done against a
/// dummy hash and the answer is `false`.
pub async fn verify(hash: Option<String>, password: &str) -> bool {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_blocking(&hash, &password),
        None => {
            verify_blocking(&DUMMY_HASH, &password);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// Computes the dummy hash now rather than at the first sign-in with an unknown name, whose
/// answer would otherwise take twice as long.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_argon2id_hash_only() {
        let hash = hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify(Some(hash.clone()), "correct horse battery").await);
        assert!(!verify(Some(hash), "correct horse batterY").await);
        assert!(!verify(None, "correct horse battery").await);
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        let err = hash("short").await.unwrap_err();
        assert_eq!(err.to_string(), "a password needs at least 12 characters");
        assert!(validate(&"x".repeat(MAX_LENGTH + 1)).is_err());
    }
}
