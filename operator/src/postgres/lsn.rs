//! PostgreSQL log sequence numbers (`pg_lsn`).
//!
//! PostgreSQL prints an LSN as two hexadecimal halves, `X/Y`, each at most 8 digits: the high
//! and low 32 bits of a byte position in the write-ahead log. Everything the switchover decides
//! ("has the target replayed the old primary's final record?", "how far behind is it?") is a
//! comparison or a difference of LSNs, so they get a real type instead of strings: ordering is
//! numeric, never lexical ("0/A" > "0/9", "1/0" > "0/FFFFFFFF").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte position in the write-ahead log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LSN {input:?}: expected two hexadecimal halves of 1 to 8 digits, like \"0/3000060\"")]
pub struct ParseLsnError {
    input: String,
}

impl Lsn {
    /// The lowest LSN, `0/0`, which PostgreSQL uses for "invalid".
    pub const ZERO: Lsn = Lsn(0);
    /// The highest LSN, `FFFFFFFF/FFFFFFFF`.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// Bytes of WAL between `earlier` and `self`; zero when `earlier` is not earlier.
    /// This is a lag: "how much must the standby still replay", which is never negative.
    pub fn bytes_after(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Signed distance `self - other` in bytes, for reporting both directions exactly.
    pub fn diff(self, other: Lsn) -> i128 {
        i128::from(self.0) - i128::from(other.0)
    }
}

fn parse_half(half: &str) -> Option<u32> {
    // from_str_radix accepts a leading '+', which pg_lsn does not.
    if half.is_empty() || half.len() > 8 || !half.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(half, 16).ok()
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ParseLsnError { input: s.to_owned() };
        let (high, low) = s.split_once('/').ok_or_else(invalid)?;
        let high = parse_half(high).ok_or_else(invalid)?;
        let low = parse_half(low).ok_or_else(invalid)?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Lsn {
    /// Exactly PostgreSQL's output format: upper-case hex, no padding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_postgres_format() {
        assert_eq!(lsn("0/0"), Lsn::ZERO);
        assert_eq!(lsn("0/3000060"), Lsn(0x0300_0060));
        assert_eq!(lsn("16/B374D848"), Lsn(0x16_B374_D848));
        assert_eq!(lsn("FFFFFFFF/FFFFFFFF"), Lsn::MAX);
        assert_eq!(lsn("ffffffff/ffffffff"), Lsn::MAX);
        for text in ["0/0", "0/3000060", "16/B374D848", "FFFFFFFF/FFFFFFFF", "1/0"] {
            assert_eq!(lsn(text).to_string(), text);
        }
        assert_eq!(lsn("00000000/0000000A").to_string(), "0/A");
    }

    #[test]
    fn rejects_invalid_input() {
        for bad in [
            "",
            "/",
            "0",
            "0/",
            "/0",
            "0/0/0",
            "G/0",
            "0/G",
            "123456789/0",
            "0/123456789",
            "+1/0",
            "-1/0",
            " 0/0",
            "0/0 ",
            "0x1/0",
            "1.5/0",
        ] {
            let err = bad.parse::<Lsn>().unwrap_err();
            assert!(err.to_string().contains("invalid LSN"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn orders_numerically_not_lexically() {
        assert!(lsn("0/A") > lsn("0/9"));
        assert!(lsn("1/0") > lsn("0/FFFFFFFF"));
        assert!(lsn("0/10") > lsn("0/F"));
        let mut sorted = vec![lsn("1/0"), lsn("0/A"), lsn("0/9"), lsn("0/0")];
        sorted.sort();
        assert_eq!(sorted, vec![lsn("0/0"), lsn("0/9"), lsn("0/A"), lsn("1/0")]);
    }

    #[test]
    fn byte_differences() {
        assert_eq!(lsn("1/0").bytes_after(lsn("0/FFFFFFFF")), 1);
        assert_eq!(lsn("0/100").bytes_after(lsn("0/0")), 256);
        assert_eq!(lsn("0/0").bytes_after(lsn("0/100")), 0, "lag never goes negative");
        assert_eq!(lsn("0/0").diff(lsn("0/100")), -256);
        assert_eq!(Lsn::MAX.diff(Lsn::ZERO), i128::from(u64::MAX));
        assert_eq!(Lsn::MAX.bytes_after(Lsn::ZERO), u64::MAX);
    }

    #[test]
    fn serde_uses_the_text_form() {
        let json = serde_json::to_string(&lsn("16/B374D848")).unwrap();
        assert_eq!(json, "\"16/B374D848\"");
        assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), lsn("16/B374D848"));
        assert!(serde_json::from_str::<Lsn>("\"nope\"").is_err());
    }
}
