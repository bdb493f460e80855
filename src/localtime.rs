//! Wall-clock times in a time zone where some days have 23 or 25 hours.

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::period::Period;
use crate::policy::fiscal::Retention;

/// The shop's calendar: WordPress keeps a zone name, or only a bare UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShopZone {
    Named(Tz),
    Offset(FixedOffset),
}

impl ShopZone {
    /// Reads discovery's form of the setting: `Europe/Amsterdam` or `UTC+5.5`.
    pub fn parse(setting: &str) -> Option<ShopZone> {
        if let Ok(zone) = setting.parse::<Tz>() {
            return Some(ShopZone::Named(zone));
        }
        let hours: f64 = setting.strip_prefix("UTC")?.parse().ok()?;
        FixedOffset::east_opt((hours * 3600.0).round() as i32).map(ShopZone::Offset)
    }

    /// When an invoice dated `dated` stops being a fiscal record on this calendar.
    pub fn retention_ends(&self, retention: &Retention, dated: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            ShopZone::Named(tz) => retention.ends(dated, tz),
            ShopZone::Offset(offset) => retention.ends(dated, offset),
        }
    }

    /// `period` before `now`, counted on this calendar.
    pub fn before(&self, period: &Period, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            ShopZone::Named(tz) => period.before(&now.with_timezone(tz)).map(|t| t.with_timezone(&Utc)),
            ShopZone::Offset(o) => period.before(&now.with_timezone(o)).map(|t| t.with_timezone(&Utc)),
        }
    }

    /// The shop's wall-clock time at `t`, as WordPress writes its non-GMT columns.
    pub fn wall_clock(&self, t: DateTime<Utc>) -> Option<NaiveDateTime> {
        match self {
            ShopZone::Named(tz) => wall_clock(&t.with_timezone(tz)),
            ShopZone::Offset(o) => wall_clock(&t.with_timezone(o)),
        }
    }

    /// `t` on this calendar, for people.
    pub fn rfc3339(&self, t: DateTime<Utc>) -> String {
        match self {
            ShopZone::Named(tz) => t.with_timezone(tz).to_rfc3339(),
            ShopZone::Offset(o) => t.with_timezone(o).to_rfc3339(),
        }
    }
}

/// The wall-clock time of `t` in its zone; `None` at the edge of chrono's calendar, where
/// `DateTime::naive_local` would panic.
pub fn wall_clock<Tz: TimeZone>(t: &DateTime<Tz>) -> Option<NaiveDateTime> {
    t.naive_utc().checked_add_offset(t.offset().fix())
}

/// The instant a wall-clock time means in `tz`: the earlier one when the clock passes it
/// twice (autumn), and the first instant after the jump when the clock skips it (spring),
/// which is what crontab and people do.
pub fn resolve<Tz: TimeZone>(tz: &Tz, naive: NaiveDateTime) -> Option<DateTime<Tz>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t),
        LocalResult::Ambiguous(earliest, _) => Some(earliest),
        LocalResult::None => {
            // Gaps are at most a few hours; walk to the first wall-clock minute that exists.
            let start = naive.with_second(0)?.with_nanosecond(0)?;
            (1..=24 * 60)
                .filter_map(|m| start.checked_add_signed(TimeDelta::minutes(m)))
                .find_map(|n| tz.from_local_datetime(&n).earliest())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use chrono_tz::Europe::Amsterdam;

    fn naive(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    #[test]
    fn the_edge_of_the_calendar_is_none_not_a_panic() {
        let max = DateTime::<chrono::Utc>::MAX_UTC.with_timezone(&Amsterdam);
        assert_eq!(wall_clock(&max), None);
    }

    #[test]
    fn skipped_times_move_to_the_end_of_the_gap_and_repeated_ones_take_the_first() {
        // 2026-03-29 02:00 → 03:00 in Amsterdam; 2026-10-25 03:00 → 02:00.
        let spring = resolve(&Amsterdam, naive(2026, 3, 29, 2, 30)).unwrap();
        assert_eq!(spring.to_rfc3339(), "2026-03-29T03:00:00+02:00");
        let autumn = resolve(&Amsterdam, naive(2026, 10, 25, 2, 30)).unwrap();
        assert_eq!(autumn.to_rfc3339(), "2026-10-25T02:30:00+02:00");
        let plain = resolve(&Amsterdam, naive(2026, 11, 24, 3, 30)).unwrap();
        assert_eq!(plain.to_rfc3339(), "2026-11-24T03:30:00+01:00");
    }
}
