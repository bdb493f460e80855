//! Retention periods as operators write them: "90 days", "18 months", "3 years".
//!
//! Months and years are calendar units, not multiples of days: "1 year" before 29 February
//! 2028 is 28 February 2027, as a person reading the privacy statement would count it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Days, Months, TimeZone};
use serde::{Deserialize, Deserializer};

use crate::localtime;

/// A calendar period: an amount of one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub amount: u32,
    pub unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Days,
    Weeks,
    Months,
    Years,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not a period: write a positive whole number and a unit, like \"90 days\", \"6 weeks\", \"18 months\" or \"3 years\"")]
pub struct ParsePeriodError {
    input: String,
}

impl Period {
    /// The moment this period before `t`, counted on the wall clock of `t`'s time zone
    /// (see [`localtime::resolve`] for days with 23 or 25 hours); `None` only outside
    /// chrono's calendar.
    pub fn before<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let n = localtime::wall_clock(t)?;
        let shifted = match self.unit {
            Unit::Days | Unit::Weeks => n.checked_sub_days(Days::new(self.days()?)),
            Unit::Months | Unit::Years => n.checked_sub_months(Months::new(self.months()?)),
        }?;
        localtime::resolve(&t.timezone(), shifted)
    }

    /// The moment this period after `t`, counted the same way as [`Period::before`]: a
    /// request received on 31 January with one month to answer is due on 28 February.
    pub fn after<Tz: TimeZone>(&self, t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        let n = localtime::wall_clock(t)?;
        let shifted = match self.unit {
            Unit::Days | Unit::Weeks => n.checked_add_days(Days::new(self.days()?)),
            Unit::Months | Unit::Years => n.checked_add_months(Months::new(self.months()?)),
        }?;
        localtime::resolve(&t.timezone(), shifted)
    }

    fn days(&self) -> Option<u64> {
        let per = if self.unit == Unit::Weeks { 7 } else { 1 };
        u64::from(self.amount).checked_mul(per)
    }

    fn months(&self) -> Option<u32> {
        let per = if self.unit == Unit::Years { 12 } else { 1 };
        self.amount.checked_mul(per)
    }
}

impl FromStr for Period {
    type Err = ParsePeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePeriodError { input: s.to_owned() };
        let mut words = s.split_whitespace();
        let (Some(amount), Some(unit), None) = (words.next(), words.next(), words.next()) else {
            return Err(err());
        };
        let amount: u32 = amount.parse().ok().filter(|n| *n > 0).ok_or_else(err)?;
        let unit = match unit.to_ascii_lowercase().as_str() {
            "day" | "days" => Unit::Days,
            "week" | "weeks" => Unit::Weeks,
            "month" | "months" => Unit::Months,
            "year" | "years" => Unit::Years,
            _ => return Err(err()),
        };
        Ok(Period { amount, unit })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Days => "day",
            Unit::Weeks => "week",
            Unit::Months => "month",
            Unit::Years => "year",
        };
        let plural = if self.amount == 1 { "" } else { "s" };
        write!(f, "{} {unit}{plural}", self.amount)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn after_counts_calendar_units_forward() {
        let p = |s: &str| s.parse::<Period>().unwrap();
        let t = at("2026-01-31T10:00:00Z");
        assert_eq!(p("1 month").after(&t), Some(at("2026-02-28T10:00:00Z")));
        assert_eq!(p("30 days").after(&t), Some(at("2026-03-02T10:00:00Z")));
        assert_eq!(p("2 weeks").after(&t), Some(at("2026-02-14T10:00:00Z")));
        assert_eq!(
            p("1 year").after(&at("2028-02-29T00:00:00Z")),
            Some(at("2029-02-28T00:00:00Z"))
        );
    }

    #[test]
    fn parses_what_operators_write() {
        assert_eq!(
            "90 days".parse(),
            Ok(Period {
                amount: 90,
                unit: Unit::Days
            })
        );
        assert_eq!(
            "1 year".parse(),
            Ok(Period {
                amount: 1,
                unit: Unit::Years
            })
        );
        assert_eq!(
            " 18  Months ".parse(),
            Ok(Period {
                amount: 18,
                unit: Unit::Months
            })
        );
        assert_eq!(
            "2 weeks".parse(),
            Ok(Period {
                amount: 2,
                unit: Unit::Weeks
            })
        );
    }

    #[test]
    fn rejects_typos_and_names_the_input() {
        for bad in [
            "3 yeers",
            "three years",
            "3",
            "years",
            "-1 days",
            "3 years ago",
            "",
            "1.5 years",
        ] {
            let e = bad.parse::<Period>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn months_and_years_are_calendar_units() {
        let leap = at("2028-02-29T12:00:00Z");
        let p: Period = "1 year".parse().unwrap();
        assert_eq!(p.before(&leap), Some(at("2027-02-28T12:00:00Z")));
        let m: Period = "1 month".parse().unwrap();
        assert_eq!(m.before(&at("2026-03-31T00:00:00Z")), Some(at("2026-02-28T00:00:00Z")));
    }

    #[test]
    fn periods_across_a_clock_change_keep_the_wall_clock_time() {
        use chrono_tz::Europe::Amsterdam;
        let t = Amsterdam.with_ymd_and_hms(2026, 3, 30, 2, 30, 0).unwrap();
        let day: Period = "1 day".parse().unwrap();
        // 02:30 did not exist on 29 March; the first instant after the jump stands in.
        assert_eq!(day.before(&t).unwrap().to_rfc3339(), "2026-03-29T03:00:00+02:00");
        let t = Amsterdam.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        let month: Period = "1 month".parse().unwrap();
        assert_eq!(month.before(&t).unwrap().to_rfc3339(), "2026-10-24T10:00:00+02:00");
    }

    #[test]
    fn displays_round_trip() {
        for s in ["1 day", "90 days", "18 months", "3 years", "1 week"] {
            assert_eq!(s.parse::<Period>().unwrap().to_string(), s);
        }
    }
}
