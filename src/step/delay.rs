//! The `delay` step (SPEC §6.1): the run waits, durably, for a duration or
//! until a time. Deciding is pure ([`Delay::decide`]): the wake-up time is
//! computed once and kept in the step's output (`{"until": …}`), so a run
//! woken early, or resumed after a restart, waits for the same time, and a
//! run woken at or after it goes on. The executor stores the wait
//! ([`crate::store::Store::schedule`]): no worker is held meanwhile.

use super::Outcome;
use crate::expr::template::{value_text, Template};
use crate::record::Timestamp;
use serde_json::{json, Value};
use std::time::Duration;

/// `--max-delay` when not given.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// The key of the wake-up time in a delay step's output.
pub const UNTIL: &str = "until";

#[derive(Debug, Clone)]
pub enum Delay {
    /// `delay: 10m`
    For(Duration),
    /// `delay: { until: "{{ $.event.send_at }}" }` (RFC 3339)
    Until(Template),
}

impl Delay {
    /// What the step does now. `output` is the step's recorded output from
    /// an earlier pass (the wake-up time chosen then), if any.
    pub fn decide(
        &self,
        ctx: &Value,
        output: Option<&Value>,
        now: Timestamp,
        max_delay: Duration,
    ) -> Outcome {
        let chosen = output
            .and_then(|o| o.get(UNTIL))
            .and_then(Value::as_str)
            .and_then(Timestamp::parse);
        let until = match chosen {
            Some(t) => t,
            None => match self.wake_time(ctx, now, max_delay) {
                Ok(t) => t,
                Err(e) => return Outcome::Failed(e),
            },
        };
        if until <= now {
            Outcome::Succeeded(json!({ UNTIL: until.to_rfc3339() }))
        } else {
            Outcome::Wait { until }
        }
    }

    fn wake_time(
        &self,
        ctx: &Value,
        now: Timestamp,
        max_delay: Duration,
    ) -> Result<Timestamp, String> {
        let too_long = |what: String| {
            format!(
                "{what} is longer than --max-delay ({}); the step waits at most that long",
                humantime::format_duration(max_delay)
            )
        };
        match self {
            Delay::For(d) => {
                if *d > max_delay {
                    return Err(too_long(format!(
                        "a delay of {}",
                        humantime::format_duration(*d)
                    )));
                }
                Ok(now.plus(*d))
            }
            Delay::Until(t) => {
                let value = t.render_value(ctx);
                let text = value_text(&value);
                let until = parse_time(text.trim()).ok_or_else(|| {
                    format!(
                        "until: `{text}` is not an RFC 3339 time (write e.g. 2026-11-27T10:00:00Z)"
                    )
                })?;
                let wait = Duration::from_millis(until.millis_since(now));
                if wait > max_delay {
                    return Err(too_long(format!("waiting until {}", until.to_rfc3339())));
                }
                Ok(until)
            }
        }
    }
}

/// An RFC 3339 time, in UTC (`Z`) or with an offset (`+01:00`).
fn parse_time(text: &str) -> Option<Timestamp> {
    let offset = text
        .len()
        .checked_sub(6)
        .and_then(|at| text.get(at..).map(|tail| (at, tail)))
        .filter(|(_, tail)| {
            let b = tail.as_bytes();
            matches!(b[0], b'+' | b'-')
                && b[3] == b':'
                && [1, 2, 4, 5].iter().all(|i| b[*i].is_ascii_digit())
        });
    let Some((at, tail)) = offset else {
        return Timestamp::parse(text);
    };
    let local = Timestamp::parse(&text[..at])?;
    let minutes = tail[1..3].parse::<u64>().ok()? * 60 + tail[4..6].parse::<u64>().ok()?;
    let shift = minutes * 60_000;
    // Local time minus its offset is UTC.
    Some(if tail.starts_with('+') {
        Timestamp(local.0.checked_sub(shift)?)
    } else {
        Timestamp(local.0.checked_add(shift)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn until(text: &str) -> Delay {
        let mut secrets = Vec::new();
        let mut env = crate::expr::template::TemplateEnv {
            env: &|_: &str| None,
            secrets: &mut secrets,
        };
        Delay::Until(Template::compile(text, &mut env).expect("template"))
    }

    #[test]
    fn waits_once_for_the_time_it_chose() {
        let now = Timestamp(1_800_000_000_000);
        let d = Delay::For(Duration::from_secs(60));
        let Outcome::Wait { until: at } = d.decide(&Value::Null, None, now, DAY) else {
            panic!("waits");
        };
        assert_eq!(at, now.plus(Duration::from_secs(60)));
        // Woken early: the same time again, not a minute from then.
        let chosen = json!({ UNTIL: at.to_rfc3339() });
        let later = now.plus(Duration::from_secs(30));
        assert_eq!(
            d.decide(&Value::Null, Some(&chosen), later, DAY),
            Outcome::Wait { until: at }
        );
        // Woken on time: done, with the time it waited for.
        assert_eq!(
            d.decide(&Value::Null, Some(&chosen), at, DAY),
            Outcome::Succeeded(chosen.clone())
        );
    }

    #[test]
    fn times_with_offsets() {
        let utc = parse_time("2026-11-27T10:00:00Z");
        assert!(utc.is_some());
        assert_eq!(parse_time("2026-11-27T11:00:00+01:00"), utc);
        assert_eq!(parse_time("2026-11-27T05:30:00-04:30"), utc);
        assert_eq!(parse_time("2026-11-27T10:00:00.000Z"), utc);
        assert_eq!(parse_time("tomorrow"), None);
        assert_eq!(parse_time("+01:00"), None);
    }

    #[test]
    fn until_a_time_past_present_or_too_far() {
        let now = Timestamp::parse("2026-11-27T10:00:00.000Z").expect("time");
        let ctx = |t: &str| json!({ "event": { "at": t } });
        let d = until("{{ $.event.at }}");
        assert!(matches!(
            d.decide(&ctx("2026-01-01T00:00:00Z"), None, now, DAY),
            Outcome::Succeeded(_)
        ));
        assert_eq!(
            d.decide(&ctx("2026-11-27T12:00:00Z"), None, now, DAY),
            Outcome::Wait {
                until: now.plus(Duration::from_secs(7200))
            }
        );
        let Outcome::Failed(e) = d.decide(&ctx("2026-12-27T12:00:00Z"), None, now, DAY) else {
            panic!("too far");
        };
        assert!(e.contains("--max-delay (1day)"), "{e}");
        let Outcome::Failed(e) = d.decide(&ctx("soon"), None, now, DAY) else {
            panic!("not a time");
        };
        assert!(e.contains("`soon` is not an RFC 3339 time"), "{e}");
        let Outcome::Failed(e) = Delay::For(DAY * 2).decide(&Value::Null, None, now, DAY) else {
            panic!("too long");
        };
        assert!(e.contains("a delay of 2days"), "{e}");
    }
}
