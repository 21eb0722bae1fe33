//! Quoting for the texts relevo writes and PostgreSQL reads: libpq connection strings and
//! postgresql.conf values.

/// A libpq keyword/value connection string. Values are single-quoted when needed, with `\` and
/// `'` escaped, so any value round-trips.
pub fn conninfo(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(key, value)| format!("{key}={}", conninfo_value(value))).collect::<Vec<_>>().join(" ")
}

fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty() && value.chars().all(|c| !c.is_whitespace() && c != '\'' && c != '\\');
    if plain { value.to_owned() } else { format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'")) }
}

/// Replaces the value of `password=` in a conninfo by `***`, for error messages and logs.
/// relevo never builds such strings, but a user-supplied one might contain it.
pub fn redact_conninfo(conninfo: &str) -> String {
    let mut out = String::with_capacity(conninfo.len());
    let mut rest = conninfo;
    while let Some(pos) = rest.find("password") {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        let after_key = after["password".len()..].trim_start();
        let Some(value) = after_key.strip_prefix('=') else {
            out.push_str("password");
            rest = &after["password".len()..];
            continue;
        };
        out.push_str("password=***");
        let value = value.trim_start();
        rest = if let Some(quoted) = value.strip_prefix('\'') {
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '\'') => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            &quoted[end..]
        } else {
            value.find(char::is_whitespace).map_or("", |i| &value[i..])
        };
    }
    out.push_str(rest);
    out
}

/// Single-quoted postgresql.conf value. Inside quotes the file format treats a backslash as
/// an escape, so backslashes are doubled as well as quotes.
pub fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_quotes_only_when_needed() {
        let info =
            conninfo(&[("host", "pg-1.pg"), ("port", "5432"), ("passfile", "/etc/relevo pass/x"), ("x", "")]);
        assert_eq!(info, r"host=pg-1.pg port=5432 passfile='/etc/relevo pass/x' x=''");
        assert_eq!(conninfo(&[("a", r"it's\")]), r"a='it\'s\\'");
    }

    #[test]
    fn redacts_passwords_in_every_form() {
        assert_eq!(redact_conninfo("host=a password=secret user=b"), "host=a password=*** user=b");
        assert_eq!(redact_conninfo("password = 'se cr\\'et' user=b"), "password=*** user=b");
        assert_eq!(redact_conninfo("host=a password=secret"), "host=a password=***");
        assert_eq!(redact_conninfo("host=a passfile=/x"), "host=a passfile=/x");
        assert!(!redact_conninfo("password='a' password=b").contains('b'));
    }
}
