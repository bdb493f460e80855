//! When the daemon runs: the next scheduled time, whether a run was missed while it was
//! down, and when a failed cycle is tried again. Pure: every function is given `now`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::audit::RunHistory;
use crate::config::ScheduleConfig;

/// The next scheduled run strictly after `t`, read on the schedule's wall clock.
pub fn next_run(schedule: &ScheduleConfig, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = t.with_timezone(&schedule.timezone.0);
    schedule.cron.next_after(&local).map(|n| n.with_timezone(&Utc))
}

/// Whether to run at start, and since when a completed run makes that unnecessary: when
/// the last run did not complete, or when a scheduled time passed since the last completed
/// run (the host was down). A store that never had a run waits for its first scheduled time.
pub fn catch_up(schedule: &ScheduleConfig, history: RunHistory, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Some(started) = history.unfinished {
        return Some(started);
    }
    let missed = next_run(schedule, history.last_completed?)?;
    (missed <= now).then_some(missed)
}

/// The wait before retrying after `failures` consecutive failed cycles (1 for the first):
/// the initial wait, doubled per further failure, capped.
pub fn retry_delay(failures: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1 << doublings).min(max)
}

/// When to retry a failed cycle: after the backoff, unless the next scheduled run comes
/// first (it does the work anyway).
pub fn retry_at(
    now: DateTime<Utc>,
    failures: u32,
    schedule: &ScheduleConfig,
    next_scheduled: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let delay = retry_delay(
        failures,
        Duration::from_secs(schedule.retry_initial_secs),
        Duration::from_secs(schedule.retry_max_secs),
    );
    let at = now + chrono::Duration::from_std(delay).ok()?;
    match next_scheduled {
        Some(next) if next <= at => None,
        _ => Some(at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TimeZone;
    use chrono::{NaiveDate, TimeZone as _};
    use chrono_tz::Europe::Amsterdam;
    use std::collections::BTreeMap;

    fn schedule(cron: &str) -> ScheduleConfig {
        ScheduleConfig {
            cron: cron.parse().unwrap(),
            timezone: TimeZone(Amsterdam),
            retry_initial_secs: 30,
            retry_max_secs: 1800,
        }
    }

    fn amsterdam(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Amsterdam
            .with_ymd_and_hms(y, m, d, h, mi, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    /// The daemon's loop reduced to its clock: each run happens at `next_run(previous run)`.
    fn runs_between(s: &ScheduleConfig, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut t = from;
        let mut runs = Vec::new();
        while let Some(next) = next_run(s, t).filter(|n| *n < until) {
            assert!(next > t, "time must move forward: {t} then {next}");
            runs.push(next);
            t = next;
        }
        runs
    }

    #[test]
    fn a_year_of_nightly_runs_in_amsterdam_is_one_run_per_calendar_day() {
        // 2026 has both clock changes: 29 March (02:00 → 03:00) and 25 October (03:00 → 02:00).
        // 02:30 does not exist on the first and happens twice on the second.
        for cron in ["30 2 * * *", "30 3 * * *", "0 0 * * *"] {
            let s = schedule(cron);
            let runs = runs_between(&s, amsterdam(2025, 12, 31, 23, 59), amsterdam(2027, 1, 1, 0, 0));
            let mut per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
            for r in &runs {
                *per_day.entry(r.with_timezone(&Amsterdam).date_naive()).or_default() += 1;
            }
            let first = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
            let days: Vec<NaiveDate> = first.iter_days().take(365).collect();
            let missing: Vec<&NaiveDate> = days.iter().filter(|d| !per_day.contains_key(d)).collect();
            let doubled: Vec<_> = per_day.iter().filter(|(_, n)| **n > 1).collect();
            assert!(missing.is_empty(), "{cron}: no run on {missing:?}");
            assert!(doubled.is_empty(), "{cron}: more than one run on {doubled:?}");
            assert_eq!(runs.len(), 365, "{cron}");
        }
    }

    #[test]
    fn the_clock_change_days_run_at_the_expected_instants() {
        let s = schedule("30 2 * * *");
        let spring = runs_between(&s, amsterdam(2026, 3, 28, 12, 0), amsterdam(2026, 3, 30, 12, 0));
        let spring: Vec<String> = spring
            .iter()
            .map(|t| t.with_timezone(&Amsterdam).to_rfc3339())
            .collect();
        // 02:30 does not exist on 29 March: the run comes right after the jump.
        assert_eq!(spring, ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]);
        let autumn = runs_between(&s, amsterdam(2026, 10, 24, 12, 0), amsterdam(2026, 10, 26, 12, 0));
        let autumn: Vec<String> = autumn
            .iter()
            .map(|t| t.with_timezone(&Amsterdam).to_rfc3339())
            .collect();
        // 02:30 happens twice on 25 October: one run, at the first.
        assert_eq!(autumn, ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]);
    }

    #[test]
    fn hourly_runs_across_the_autumn_change_are_one_per_real_hour() {
        // 25 October has 25 real hours but 24 wall-clock hours: the repeated 02:00 hour runs
        // once, so one gap is two real hours and no hour runs twice.
        let s = schedule("0 * * * *");
        let runs = runs_between(&s, amsterdam(2026, 10, 24, 23, 30), amsterdam(2026, 10, 25, 23, 30));
        let gaps: Vec<i64> = runs.windows(2).map(|w| (w[1] - w[0]).num_minutes()).collect();
        assert_eq!(gaps.iter().filter(|g| **g == 120).count(), 1, "{gaps:?}");
        assert!(gaps.iter().all(|g| *g == 60 || *g == 120), "{gaps:?}");
        assert_eq!(runs.len(), 24, "{runs:?}");
    }

    #[test]
    fn catch_up_when_a_scheduled_time_passed_since_the_last_completed_run() {
        let s = schedule("30 3 * * *");
        let yesterday = amsterdam(2026, 11, 23, 3, 30);
        let history = RunHistory {
            last_completed: Some(yesterday),
            unfinished: None,
        };
        // Before today's 03:30 nothing was missed.
        assert_eq!(catch_up(&s, history, amsterdam(2026, 11, 24, 3, 0)), None);
        // After it, today's run was missed (the host was down), and it is what is owed.
        assert_eq!(
            catch_up(&s, history, amsterdam(2026, 11, 24, 9, 0)),
            Some(amsterdam(2026, 11, 24, 3, 30))
        );
        // Down for a week: one catch-up run, owed since the first missed time.
        assert_eq!(
            catch_up(&s, history, amsterdam(2026, 12, 1, 9, 0)),
            Some(amsterdam(2026, 11, 24, 3, 30))
        );
    }

    #[test]
    fn catch_up_when_the_last_run_did_not_complete() {
        let s = schedule("30 3 * * *");
        let interrupted = amsterdam(2026, 11, 24, 3, 30);
        let history = RunHistory {
            last_completed: Some(amsterdam(2026, 11, 23, 3, 30)),
            unfinished: Some(interrupted),
        };
        assert_eq!(catch_up(&s, history, amsterdam(2026, 11, 24, 3, 31)), Some(interrupted));
        let never_completed = RunHistory {
            last_completed: None,
            unfinished: Some(interrupted),
        };
        assert_eq!(
            catch_up(&s, never_completed, amsterdam(2026, 11, 24, 3, 31)),
            Some(interrupted)
        );
    }

    #[test]
    fn a_store_without_runs_waits_for_its_first_scheduled_time() {
        let s = schedule("30 3 * * *");
        assert_eq!(catch_up(&s, RunHistory::default(), amsterdam(2026, 11, 24, 9, 0)), None);
    }

    #[test]
    fn weekday_schedules_catch_up_only_for_a_missed_weekday() {
        let s = schedule("30 3 * * 1-5");
        // Friday's run completed; on Sunday nothing was missed, on Monday after 03:30 it was.
        let friday = amsterdam(2026, 11, 27, 3, 30);
        let history = RunHistory {
            last_completed: Some(friday),
            unfinished: None,
        };
        assert_eq!(catch_up(&s, history, amsterdam(2026, 11, 29, 12, 0)), None);
        assert_eq!(
            catch_up(&s, history, amsterdam(2026, 11, 30, 12, 0)),
            Some(amsterdam(2026, 11, 30, 3, 30))
        );
    }

    #[test]
    fn retries_back_off_doubling_up_to_the_cap() {
        let (initial, max) = (Duration::from_secs(30), Duration::from_secs(1800));
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n, initial, max).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
        assert_eq!(retry_delay(u32::MAX, initial, max).as_secs(), 1800);
    }

    #[test]
    fn a_retry_never_passes_the_next_scheduled_run() {
        let s = schedule("30 3 * * *");
        let now = amsterdam(2026, 11, 24, 3, 30);
        let next = next_run(&s, now);
        assert_eq!(next, Some(amsterdam(2026, 11, 25, 3, 30)));
        let first = retry_at(now, 1, &s, next);
        assert_eq!(first, Some(now + chrono::Duration::seconds(30)));
        // Ten minutes before the next run, a 30-minute backoff gives way to the schedule.
        let late = amsterdam(2026, 11, 25, 3, 20);
        assert_eq!(retry_at(late, 9, &s, next), None);
        assert_eq!(retry_at(late, 1, &s, next), Some(late + chrono::Duration::seconds(30)));
    }
}
