//! Go-style durations ("5s", "1m30s", "500ms", "24h"), the grammar of
//! [`crate::crd::common::DURATION_PATTERN`] and of CEL's `duration()`.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{0:?} is not a duration like \"5s\", \"1m30s\" or \"500ms\"")]
    Malformed(String),
    #[error("{0:?} overflows")]
    Overflow(String),
}

/// Parses a sequence of `<number><unit>` terms with units ms, s, m, h. Fractions are allowed
/// ("1.5s"); signs are not, because no relevo duration can be negative.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(text.to_string());
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(malformed)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(malformed()),
        };
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return Err(malformed());
        }
        let value: f64 = number.parse().map_err(|_| malformed())?;
        let term = Duration::try_from_secs_f64(value * seconds_per_unit)
            .map_err(|_| DurationError::Overflow(text.to_string()))?;
        total = total.checked_add(term).ok_or_else(|| DurationError::Overflow(text.to_string()))?;
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1h0m10s"), Ok(Duration::from_secs(3610)));
    }

    #[test]
    fn refuses_signs_units_and_garbage() {
        for bad in ["-5s", "5", "5d", "s", "five seconds", "5 s", ".5s", "5.s", "1m-3s"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(parse(""), Err(DurationError::Empty));
    }
}
