//! Tenant id validation, with the rules and messages of Loki (dskit).

/// Why a tenant id (`X-Scope-OrgID`) is refused; the texts are Loki's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// No tenant id while auth is on.
    #[error("no org id")]
    Missing,
    /// Longer than [`MAX_TENANT_ID_LEN`].
    #[error("tenant ID is too long: max 150 characters")]
    TooLong,
    /// `.` or `..`.
    #[error("tenant ID is '.' or '..'")]
    Dots,
    /// The id and the first character Loki does not allow in it.
    #[error("tenant ID '{0}' contains unsupported character '{1}'")]
    BadChar(String, char),
}

/// The longest tenant id Loki accepts.
pub const MAX_TENANT_ID_LEN: usize = 150;

/// Accepts `A–Z a–z 0–9 ! - _ . * ' ( )`, at most 150 bytes, and not `.` or `..`.
pub fn validate_tenant_id(id: &str) -> Result<(), TenantError> {
    if id.is_empty() {
        return Err(TenantError::Missing);
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
    {
        return Err(TenantError::BadChar(id.to_string(), c));
    }
    if id.len() > MAX_TENANT_ID_LEN {
        return Err(TenantError::TooLong);
    }
    if id == "." || id == ".." {
        return Err(TenantError::Dots);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(validate_tenant_id("team-a_1.(x)*'!").is_ok());
        assert_eq!(validate_tenant_id(".."), Err(TenantError::Dots));
        assert_eq!(
            validate_tenant_id("a/b").unwrap_err().to_string(),
            "tenant ID 'a/b' contains unsupported character '/'"
        );
        assert_eq!(
            validate_tenant_id(&"a".repeat(151)),
            Err(TenantError::TooLong)
        );
        assert!(validate_tenant_id("a|b").is_err());
        assert!(validate_tenant_id("a:b").is_err());
    }
}
