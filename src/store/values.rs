//! Converting what MySQL returns into facts, whatever a real shop has stored: NULL, zero
//! dates (`0000-00-00 00:00:00`), numbers as text, bytes that are not UTF-8. Nothing here
//! panics on a value; an unreadable value is `None`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use mysql_async::{Row, Value};

/// A row's values as read (`Row::unwrap` would panic on a value taken before).
pub fn row_values(row: Row) -> Vec<Value> {
    row.unwrap_raw().into_iter().map(|v| v.unwrap_or(Value::NULL)).collect()
}

pub fn u64_of(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::UInt(u) => Some(*u),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

pub fn i64_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::UInt(u) => i64::try_from(*u).ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

pub fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Bytes(b) => Some(b.clone()),
        _ => None,
    }
}

/// Text, lossily decoded; NULL is empty.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::NULL => String::new(),
        other => other.as_sql(true).trim_matches('\'').to_owned(),
    }
}

/// A lowercased, trimmed email.
pub fn email_of(v: &Value) -> String {
    text_of(v).trim().to_lowercase()
}

/// A DATETIME column (UTC, as the `*_gmt` columns are), `None` for NULL and zero dates.
pub fn time_of(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Date(y, mo, d, h, mi, s, _) => NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*mo), u32::from(*d))?
            .and_hms_opt(u32::from(*h), u32::from(*mi), u32::from(*s))
            .map(|n| n.and_utc()),
        Value::Bytes(b) => {
            let s = std::str::from_utf8(b).ok()?;
            let s = s.get(..19).unwrap_or(s);
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|n| n.and_utc())
        }
        _ => None,
    }
}

/// A unix time stored as text (meta values such as `wc_last_active` and `_date_paid`).
pub fn unix_of(v: &Value) -> Option<DateTime<Utc>> {
    i64_of(v)
        .filter(|t| *t > 0)
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

/// A date that may be missing, readable, or stored but unreadable: the policy treats the
/// last as unknown, never as old or as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dated {
    /// No value: NULL, no meta row, or an empty meta value.
    Absent,
    At(DateTime<Utc>),
    /// A zero date, or text that is not a positive unix time.
    Unreadable,
}

impl Dated {
    pub fn time(self) -> Option<DateTime<Utc>> {
        match self {
            Dated::At(t) => Some(t),
            _ => None,
        }
    }

    pub fn unreadable(self) -> bool {
        self == Dated::Unreadable
    }

    /// The date when readable, and whether it is stored but unreadable: the two facts the
    /// policy keeps for each date.
    pub fn parts(self) -> (Option<DateTime<Utc>>, bool) {
        (self.time(), self.unreadable())
    }
}

/// A nullable DATETIME column: NULL is absent, a zero date unreadable.
pub fn datetime_of(v: &Value) -> Dated {
    match (v, time_of(v)) {
        (Value::NULL, _) => Dated::Absent,
        (_, Some(t)) => Dated::At(t),
        (_, None) => Dated::Unreadable,
    }
}

/// A unix time in a meta value: no row (`None`) or an empty value is absent; a value that
/// is not a positive unix time (garbage, `0`, bytes that are not text) is unreadable.
pub fn unix_meta_of(v: Option<&Value>) -> Dated {
    let Some(v) = v else { return Dated::Absent };
    let empty = match v {
        Value::NULL => true,
        Value::Bytes(b) => b.iter().all(u8::is_ascii_whitespace),
        _ => false,
    };
    match unix_of(v) {
        Some(t) => Dated::At(t),
        None if empty => Dated::Absent,
        None => Dated::Unreadable,
    }
}

/// `a, b, c` for an `IN (…)` of ids (numbers only, so safe to inline).
pub fn id_list(ids: impl IntoIterator<Item = u64>) -> String {
    let mut out = String::new();
    for id in ids {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out
}

/// `'1','2'` for comparing ids with text columns (meta values, session keys).
pub fn id_text_list(ids: impl IntoIterator<Item = u64>) -> String {
    let mut out = String::new();
    for id in ids {
        if !out.is_empty() {
            out.push(',');
        }
        out.push('\'');
        out.push_str(&id.to_string());
        out.push('\'');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_none() {
        assert_eq!(time_of(&Value::Date(0, 0, 0, 0, 0, 0, 0)), None);
        assert_eq!(time_of(&Value::Bytes(b"0000-00-00 00:00:00".to_vec())), None);
        assert_eq!(time_of(&Value::NULL), None);
        assert_eq!(
            time_of(&Value::Bytes(b"2020-02-29 23:30:00".to_vec())).map(|t| t.to_rfc3339()),
            Some("2020-02-29T23:30:00+00:00".to_owned())
        );
        assert_eq!(
            time_of(&Value::Date(2020, 2, 29, 23, 30, 0, 5)).map(|t| t.timestamp()),
            Some(1_583_019_000)
        );
        assert_eq!(unix_of(&Value::Bytes(b"abc".to_vec())), None);
        assert_eq!(unix_of(&Value::Bytes(b"0".to_vec())), None);
        assert_eq!(u64_of(&Value::Int(-1)), None);
        assert_eq!(text_of(&Value::Bytes(vec![b'a', 0xff])), "a\u{fffd}");
        assert_eq!(email_of(&Value::Bytes(b" Jan@Example.NL ".to_vec())), "jan@example.nl");
        assert_eq!(id_list([1, 2]), "1,2");
        assert_eq!(id_text_list([1, 2]), "'1','2'");
    }

    #[test]
    fn absent_dates_are_told_from_unreadable_ones() {
        assert_eq!(datetime_of(&Value::NULL), Dated::Absent);
        assert_eq!(datetime_of(&Value::Date(0, 0, 0, 0, 0, 0, 0)), Dated::Unreadable);
        assert_eq!(datetime_of(&Value::Date(2020, 0, 15, 0, 0, 0, 0)), Dated::Unreadable);
        assert_eq!(
            datetime_of(&Value::Date(2020, 2, 29, 23, 30, 0, 0))
                .time()
                .map(|t| t.timestamp()),
            Some(1_583_019_000)
        );
        assert_eq!(unix_meta_of(None), Dated::Absent);
        assert_eq!(unix_meta_of(Some(&Value::Bytes(b"".to_vec()))), Dated::Absent);
        assert_eq!(unix_meta_of(Some(&Value::Bytes(b" ".to_vec()))), Dated::Absent);
        assert_eq!(unix_meta_of(Some(&Value::NULL)), Dated::Absent);
        for bad in [&b"soon"[..], b"0", b"-5", b"2024-01-01", b"\xe9", b"1e9"] {
            assert!(unix_meta_of(Some(&Value::Bytes(bad.to_vec()))).unreadable(), "{bad:?}");
        }
        assert_eq!(
            unix_meta_of(Some(&Value::Bytes(b"1700000000".to_vec())))
                .time()
                .map(|t| t.timestamp()),
            Some(1_700_000_000)
        );
    }
}
