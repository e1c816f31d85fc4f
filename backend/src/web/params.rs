//! Parsing the query parameters of lists (API and console alike): ids, page sizes, severities,
//! closed word lists. Every bad value is a 400 that names the parameter; unknown parameters are
//! refused with the list of the known ones.

use std::collections::HashMap;

use super::WebError;
use crate::posture::Severity;

/// The page size of an API list when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// The largest `limit` an API list accepts.
pub const MAX_LIMIT: i64 = 500;

/// A non-negative whole number (an id, a cursor).
pub fn parse_id(name: &str, value: &str) -> Result<i64, WebError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| WebError::BadRequest(format!("{name} must be a non-negative whole number")))
}

/// `limit`: 1 to [`MAX_LIMIT`].
pub fn parse_limit(value: &str) -> Result<i64, WebError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            WebError::BadRequest(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}"
            ))
        })
}

pub fn parse_bool(name: &str, value: &str) -> Result<bool, WebError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(WebError::BadRequest(format!(
            "{name} must be true or false"
        ))),
    }
}

/// A severity word, among `allowed`.
pub fn parse_severity(value: &str, allowed: &[Severity]) -> Result<Severity, WebError> {
    Severity::parse(value)
        .filter(|severity| allowed.contains(severity))
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            WebError::BadRequest(format!(
                "severity '{value}' is not one of {}",
                names.join(", ")
            ))
        })
}

/// `value` when it is one of `allowed`.
pub fn one_of(name: &str, value: &str, allowed: &[&str]) -> Result<String, WebError> {
    if allowed.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(WebError::BadRequest(format!(
            "{name} '{value}' is not one of {}",
            allowed.join(", ")
        )))
    }
}

/// The refusal of a parameter nobody knows.
pub fn unknown(name: &str, expected: &[&str]) -> WebError {
    let list = match expected {
        [] => String::new(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    };
    WebError::BadRequest(format!("unknown parameter '{name}'; expected {list}"))
}

/// What a console form submits, without its empty fields (an empty field means "any").
pub fn given(mut params: HashMap<String, String>) -> HashMap<String, String> {
    params.retain(|_, value| !value.trim().is_empty());
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_parameter() {
        assert_eq!(parse_id("after", " 7").unwrap(), 7);
        assert!(parse_id("after", "-1").is_err());
        assert_eq!(parse_limit("500").unwrap(), 500);
        assert!(parse_limit("501").is_err());
        assert!(parse_severity("info", &[Severity::Low]).is_err());
        assert_eq!(
            parse_severity("HIGH", &Severity::ALL).unwrap(),
            Severity::High
        );
        let WebError::BadRequest(message) = unknown("colour", &["a", "b", "c"]) else {
            panic!()
        };
        assert_eq!(message, "unknown parameter 'colour'; expected a, b or c");
    }
}
