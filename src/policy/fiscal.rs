//! How long an invoice is a fiscal record: until `retain_years` after the end of the fiscal
//! year it belongs to (Dutch law: 7 years, 10 for the OSS scheme), counted on the shop's
//! calendar: an order paid at 00:30 on 1 January in Amsterdam belongs to the new year,
//! although it is still 31 December in UTC.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

use crate::localtime;

/// The last day of the fiscal year, as `MM-DD` (`12-31` for a calendar year).
/// `02-29` means the last day of February in every year.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FiscalYearEnd {
    month: u32,
    day: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a fiscal year end: write month-day as MM-DD, like \"12-31\" or \"06-30\"")]
pub struct ParseFiscalYearEndError(String);

impl FromStr for FiscalYearEnd {
    type Err = ParseFiscalYearEndError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFiscalYearEndError(s.to_owned());
        let (m, d) = s.split_once('-').ok_or_else(err)?;
        let (month, day): (u32, u32) = (m.parse().map_err(|_| err())?, d.parse().map_err(|_| err())?);
        // 2024 is a leap year, so 02-29 is accepted and every real month-day is.
        NaiveDate::from_ymd_opt(2024, month, day).ok_or_else(err)?;
        Ok(FiscalYearEnd { month, day })
    }
}

impl fmt::Display for FiscalYearEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

impl<'de> serde::Deserialize<'de> for FiscalYearEnd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Default for FiscalYearEnd {
    fn default() -> Self {
        FiscalYearEnd { month: 12, day: 31 }
    }
}

impl FiscalYearEnd {
    /// This fiscal year end in calendar year `year` (28 February for `02-29` in common years).
    fn in_year(&self, year: i32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(year, self.month, self.day)
            .or_else(|| NaiveDate::from_ymd_opt(year, self.month, self.day - 1))
    }

    /// The last day of the fiscal year that contains `date`.
    pub fn closing(&self, date: NaiveDate) -> Option<NaiveDate> {
        let this_year = self.in_year(date.year())?;
        if date <= this_year {
            Some(this_year)
        } else {
            self.in_year(date.year() + 1)
        }
    }
}

/// The statutory retention of invoices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub fiscal_year_end: FiscalYearEnd,
    pub years: u32,
}

impl Retention {
    /// The first instant an invoice dated `dated` (paid or completed, else created) is no
    /// longer a fiscal record: the start of the day after the end of the fiscal year
    /// `years` after its own, in the shop's time zone `tz`.
    pub fn ends<Tz: TimeZone>(&self, dated: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        let local_day = localtime::wall_clock(&dated.with_timezone(tz))?.date();
        let closing = self.fiscal_year_end.closing(local_day)?;
        let year = closing.year().checked_add(i32::try_from(self.years).ok()?)?;
        let last_kept_day = self.fiscal_year_end.in_year(year)?;
        let end = last_kept_day.succ_opt()?.and_hms_opt(0, 0, 0)?;
        localtime::resolve(tz, end).map(|t| t.with_timezone(&Utc))
    }

    /// Whether an invoice dated `dated` must still be kept at `now`.
    pub fn retained<Tz: TimeZone>(&self, dated: DateTime<Utc>, tz: &Tz, now: DateTime<Utc>) -> bool {
        // An end beyond the calendar means "kept": never anonymise on arithmetic overflow.
        self.ends(dated, tz).is_none_or(|end| now < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Amsterdam;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn dutch() -> Retention {
        Retention {
            fiscal_year_end: "12-31".parse().unwrap(),
            years: 7,
        }
    }

    #[test]
    fn seven_years_after_the_end_of_the_fiscal_year() {
        let ends = dutch().ends(utc("2019-03-05T10:00:00Z"), &Amsterdam).unwrap();
        assert_eq!(ends, utc("2026-12-31T23:00:00Z")); // 2027-01-01 00:00 in Amsterdam
        let r = dutch();
        let dated = utc("2019-03-05T10:00:00Z");
        assert!(
            r.retained(dated, &Amsterdam, utc("2026-12-31T22:59:59Z")),
            "the day before the end"
        );
        assert!(
            !r.retained(dated, &Amsterdam, utc("2026-12-31T23:00:00Z")),
            "the end itself"
        );
        assert!(
            !r.retained(dated, &Amsterdam, utc("2027-01-01T12:00:00Z")),
            "the day after"
        );
    }

    #[test]
    fn new_years_eve_belongs_to_the_shops_calendar_year() {
        // 23:30 on 31 December in Amsterdam is 22:30 UTC: fiscal year 2019.
        let ends = dutch().ends(utc("2019-12-31T22:30:00Z"), &Amsterdam).unwrap();
        assert_eq!(ends, utc("2026-12-31T23:00:00Z"));
        // 23:30 UTC is already 00:30 on 1 January in Amsterdam: fiscal year 2020.
        let ends = dutch().ends(utc("2019-12-31T23:30:00Z"), &Amsterdam).unwrap();
        assert_eq!(ends, utc("2027-12-31T23:00:00Z"));
    }

    #[test]
    fn leap_days_and_february_year_ends() {
        // An invoice on a leap day, calendar fiscal year: nothing special.
        assert_eq!(
            dutch().ends(utc("2020-02-29T12:00:00Z"), &Amsterdam).unwrap(),
            utc("2027-12-31T23:00:00Z")
        );
        // A fiscal year ending 28 February: the leap day already belongs to the next one.
        let feb28 = Retention {
            fiscal_year_end: "02-28".parse().unwrap(),
            years: 7,
        };
        assert_eq!(
            feb28.ends(utc("2020-02-29T12:00:00Z"), &Amsterdam).unwrap(),
            utc("2028-02-28T23:00:00Z")
        );
        // "02-29" means the last day of February: 28 February in common years.
        let feb29 = Retention {
            fiscal_year_end: "02-29".parse().unwrap(),
            years: 7,
        };
        assert_eq!(
            feb29.ends(utc("2021-02-28T12:00:00Z"), &Amsterdam).unwrap(),
            utc("2028-02-29T23:00:00Z")
        );
        assert_eq!(
            feb29.ends(utc("2021-03-01T12:00:00Z"), &Amsterdam).unwrap(),
            utc("2029-02-28T23:00:00Z")
        );
    }

    #[test]
    fn oss_ten_years_and_a_mid_year_fiscal_year() {
        let oss = Retention {
            fiscal_year_end: "06-30".parse().unwrap(),
            years: 10,
        };
        // 1 July 2020 opens fiscal year 2020/21, which closes 30 June 2021.
        assert_eq!(
            oss.ends(utc("2020-07-01T08:00:00Z"), &Amsterdam).unwrap(),
            utc("2031-06-30T22:00:00Z")
        );
        assert_eq!(
            oss.ends(utc("2020-06-30T08:00:00Z"), &Amsterdam).unwrap(),
            utc("2030-06-30T22:00:00Z")
        );
    }

    #[test]
    fn the_edge_of_the_calendar_means_kept_not_a_panic() {
        let r = dutch();
        assert_eq!(r.ends(DateTime::<Utc>::MAX_UTC, &Amsterdam), None);
        assert!(r.retained(DateTime::<Utc>::MAX_UTC, &Amsterdam, utc("2026-11-24T00:00:00Z")));
    }

    #[test]
    fn fiscal_year_ends_are_checked() {
        assert_eq!("12-31".parse::<FiscalYearEnd>().unwrap().to_string(), "12-31");
        assert_eq!("6-30".parse::<FiscalYearEnd>().unwrap().to_string(), "06-30");
        for bad in ["13-01", "02-30", "12/31", "31-12", "", "12-31-2020"] {
            let e = bad.parse::<FiscalYearEnd>().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
