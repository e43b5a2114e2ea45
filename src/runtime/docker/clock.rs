//! The Docker daemon's clock, as seen from here.
//!
//! Docker stamps its events with its own clock and reads the `since`/`until` of an event query
//! on it, and that clock need not be this host's: Docker Desktop runs the daemon in a VM, a
//! remote daemon has its own. So the event index never reads the window up to this host's
//! time. It keeps an interval that surely holds the daemon's clock minus this process's
//! monotonic clock (the *offset*), narrowed by what the daemon says:
//!
//! - every answer's `Date` header (whole seconds, written while the request was with the
//!   daemon): `D ≤ daemon time < D + 1 s` somewhere between sending and receiving;
//! - the second at which that header changes, found by pinging around it (`calibrate`): two
//!   pings on each side of the boundary bracket the offset to about two round trips;
//! - every event (stamped by the daemon before it was received here).
//!
//! The interval widens by [`DRIFT_PPM`] as time passes; an observation outside it means the
//! daemon's clock was stepped, and the interval starts again from that observation. Local
//! times are nanoseconds of the monotonic clock since the clock was made (they never step).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

/// How fast the two clocks may drift apart, in parts per million, before an observation
/// shows it: NTP keeps each clock within 500 ppm of true time and in practice far closer;
/// a faster change is caught as a step by the next observation.
pub const DRIFT_PPM: i64 = 100;

/// Calibration stops once the offset is known this closely.
pub const TARGET_WIDTH: i64 = 400_000;

/// At most this many pings per calibration.
const MAX_PINGS: usize = 600;

/// Pings start this long before the earliest moment the daemon's second can change
/// (timers fire late).
const LEAD: i64 = 3_000_000;

/// What is known of `daemon time - local time`, as of local time `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub lo: i64,
    pub hi: i64,
    pub at: i64,
}

impl Bounds {
    /// The bounds as of a later local time: wider by the drift allowed meanwhile.
    pub fn at(self, local: i64) -> Bounds {
        let grow = (local - self.at).max(0) * DRIFT_PPM / 1_000_000;
        Bounds {
            lo: self.lo - grow,
            hi: self.hi + grow,
            at: local.max(self.at),
        }
    }

    pub fn width(&self) -> i64 {
        self.hi - self.lo
    }
}

/// Whether an observation agreed with what was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Consistent,
    /// It lies outside the known interval: the daemon's clock was stepped (or drifted faster
    /// than allowed). The interval now starts again from this observation.
    Stepped,
}

/// The offset interval, pure: observations in, bounds out.
#[derive(Debug, Clone, Default)]
pub struct Offset {
    bounds: Option<Bounds>,
}

impl Offset {
    pub fn bounds(&self, local: i64) -> Option<Bounds> {
        self.bounds.map(|bounds| bounds.at(local))
    }

    pub fn forget(&mut self) {
        self.bounds = None;
    }

    /// The offset is in `[lo, hi]` at local time `at` (`None`: unbounded on that side).
    pub fn observe(&mut self, lo: Option<i64>, hi: Option<i64>, at: i64) -> Observed {
        let Some(known) = self.bounds else {
            return match (lo, hi) {
                (Some(lo), Some(hi)) if lo <= hi => {
                    self.bounds = Some(Bounds { lo, hi, at });
                    Observed::Consistent
                }
                // One-sided knowledge alone bounds nothing.
                _ => Observed::Consistent,
            };
        };
        let known = known.at(at);
        let narrowed = Bounds {
            lo: lo.map_or(known.lo, |lo| lo.max(known.lo)),
            hi: hi.map_or(known.hi, |hi| hi.min(known.hi)),
            at: known.at,
        };
        if narrowed.lo <= narrowed.hi {
            self.bounds = Some(narrowed);
            return Observed::Consistent;
        }
        // A step: what was known is void; keep what this observation says, if it bounds
        // both sides.
        self.bounds = match (lo, hi) {
            (Some(lo), Some(hi)) if lo <= hi => Some(Bounds { lo, hi, at }),
            _ => None,
        };
        Observed::Stepped
    }

    /// A `Date` header of `date` whole seconds on an answer to a request sent at local time
    /// `sent` and received at `received`: the daemon wrote it in between, so its clock read
    /// at least `date` then, and less than `date + 1`.
    pub fn observe_date(&mut self, date: i64, sent: i64, received: i64) -> Observed {
        let second = date.saturating_mul(NANOS_PER_SEC);
        self.observe(
            Some(second - received),
            Some(second + NANOS_PER_SEC - sent),
            received,
        )
    }

    /// An event stamped `time` (daemon nanoseconds) that had arrived by local time `received`.
    pub fn observe_event(&mut self, time: i64, received: i64) -> Observed {
        self.observe(Some(time - received), None, received)
    }
}

/// The offset shared by the requests and the calibration, and the local clock it is
/// measured against.
pub struct DaemonClock {
    base: Instant,
    offset: Mutex<Offset>,
}

impl Default for DaemonClock {
    fn default() -> Self {
        Self::new()
    }
}

impl DaemonClock {
    pub fn new() -> Self {
        DaemonClock {
            base: Instant::now(),
            offset: Mutex::new(Offset::default()),
        }
    }

    /// Local time: nanoseconds of the monotonic clock since the clock was made.
    pub fn local(&self) -> i64 {
        i64::try_from(self.base.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }

    pub fn bounds(&self) -> Option<Bounds> {
        let local = self.local();
        self.lock().bounds(local)
    }

    /// The latest the daemon's clock can read at local time `local`.
    pub fn latest(&self, local: i64) -> Option<i64> {
        self.lock().bounds(local).map(|b| local + b.hi)
    }

    /// The earliest the daemon's clock can read at local time `local`.
    pub fn earliest(&self, local: i64) -> Option<i64> {
        self.lock().bounds(local).map(|b| local + b.lo)
    }

    pub fn observe_date(&self, date: i64, sent: i64, received: i64) -> Observed {
        self.lock().observe_date(date, sent, received)
    }

    pub fn observe_event(&self, time: i64, received: i64) -> Observed {
        self.lock().observe_event(time, received)
    }

    pub fn forget(&self) {
        self.lock().forget();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Offset> {
        // The offset is plain data, valid after any panic.
        self.offset
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Narrows the offset to [`TARGET_WIDTH`] (or as close as the round trips allow) by
    /// pinging the daemon around the moments its second changes. `ping` answers the `Date`
    /// header's Unix seconds (`None`: the daemon sends none, and its clock cannot be known).
    /// Takes one to three of the daemon's seconds.
    pub async fn calibrate<F, Fut, E>(&self, mut ping: F) -> Result<Bounds, CalibrationError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<i64>, E>>,
    {
        let mut pings = 0;
        loop {
            let Some(known) = self.bounds() else {
                self.look(&mut ping, &mut pings).await?;
                continue;
            };
            if known.width() <= TARGET_WIDTH {
                return Ok(known);
            }
            // The next second of the daemon that surely lies ahead, and when (local time) it
            // can begin at the earliest and at the latest.
            let now = self.local();
            let second = (now + known.hi + LEAD).div_euclid(NANOS_PER_SEC) + 1;
            let earliest = second * NANOS_PER_SEC - known.hi;
            let latest = second * NANOS_PER_SEC - known.lo;
            // Coarse steps while the interval is wide, back to back once it is narrow.
            let step = known.width() / 32;
            self.sleep_until(earliest - LEAD).await;
            loop {
                let date = self.look(&mut ping, &mut pings).await?;
                if date >= second || self.local() > latest + LEAD {
                    break;
                }
                if step >= 1_000_000 {
                    tokio::time::sleep(Duration::from_nanos(step.unsigned_abs())).await;
                } else if self.local() < earliest - 2_000_000 {
                    // Back to back only close to the boundary.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            // Round trips too slow to narrow it further: as good as it gets.
            if let Some(now) = self.bounds()
                && now.width() * 4 > known.width() * 3
                && now.width() < 2 * NANOS_PER_SEC / 1000
            {
                return Ok(now);
            }
        }
    }

    /// One ping, observed.
    async fn look<F, Fut, E>(
        &self,
        ping: &mut F,
        pings: &mut usize,
    ) -> Result<i64, CalibrationError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<i64>, E>>,
    {
        *pings += 1;
        if *pings > MAX_PINGS {
            return Err(CalibrationError::TooManyPings);
        }
        let sent = self.local();
        let date = ping()
            .await
            .map_err(CalibrationError::Ping)?
            .ok_or(CalibrationError::NoDate)?;
        let received = self.local();
        self.observe_date(date, sent, received);
        Ok(date)
    }

    async fn sleep_until(&self, local: i64) {
        let wait = local - self.local();
        if wait > 0 {
            tokio::time::sleep(Duration::from_nanos(wait.unsigned_abs())).await;
        }
    }
}

/// Why the daemon's clock could not be read.
#[derive(Debug)]
pub enum CalibrationError<E> {
    Ping(E),
    /// The daemon's answers carry no `Date` header.
    NoDate,
    /// The `Date` header never changed where it had to: the daemon's clock is not steady.
    TooManyPings,
}

impl<E: std::fmt::Display> std::fmt::Display for CalibrationError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibrationError::Ping(err) => write!(f, "ping failed: {err}"),
            CalibrationError::NoDate => write!(f, "the daemon's answers carry no Date header"),
            CalibrationError::TooManyPings => {
                write!(f, "the daemon's Date header does not follow a steady clock")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = NANOS_PER_SEC;

    #[test]
    fn dates_bracket_the_offset_and_steps_restart_it() {
        let mut offset = Offset::default();
        // Daemon 7 minutes and 0.37 s ahead; a ping sent at 10.0 s local, back 1 ms later.
        let true_offset = 420 * SEC + 370_000_000;
        let date = |local: i64| (local + true_offset).div_euclid(SEC);
        assert_eq!(
            offset.observe_date(date(10 * SEC), 10 * SEC, 10 * SEC + 1_000_000),
            Observed::Consistent
        );
        let b = offset.bounds(10 * SEC + 1_000_000).unwrap();
        assert!(b.lo <= true_offset && true_offset <= b.hi, "{b:?}");
        assert!(b.width() <= SEC + 1_000_000);
        // Two pings on each side of the daemon's next second (431 s, at local 10.63 s).
        let boundary = 431 * SEC - true_offset;
        let before = boundary - 200_000;
        let after = boundary + 100_000;
        offset.observe_date(date(before + 50_000), before, before + 100_000);
        offset.observe_date(date(after - 50_000), after - 100_000, after);
        let b = offset.bounds(after).unwrap();
        assert!(b.lo <= true_offset && true_offset <= b.hi, "{b:?}");
        assert!(b.width() <= 400_000, "{b:?}");
        // An event stamped later than the interval allows: the daemon stepped forward.
        assert_eq!(
            offset.observe_event(after + b.hi + 5 * SEC, after + 1_000),
            Observed::Stepped
        );
        assert_eq!(offset.bounds(after), None);
        // The interval widens with time.
        offset.observe_date(date(20 * SEC), 20 * SEC, 20 * SEC);
        let now = offset.bounds(20 * SEC).unwrap();
        let later = offset.bounds(30 * SEC).unwrap();
        assert_eq!(
            later.width() - now.width(),
            2 * 10 * SEC * DRIFT_PPM / 1_000_000
        );
    }

    /// A daemon whose clock is `offset` ahead of the local one.
    async fn calibrated(offset: i64) -> (Bounds, i64) {
        let clock = DaemonClock::new();
        // Answers after a round trip of 60 µs, the daemon's clock read half-way.
        let ping = || async {
            std::thread::sleep(Duration::from_micros(30));
            let date = (clock.local() + offset).div_euclid(SEC);
            std::thread::sleep(Duration::from_micros(30));
            Ok::<_, String>(Some(date))
        };
        let bounds = clock.calibrate(ping).await.unwrap();
        (bounds, clock.local())
    }

    #[test]
    fn calibration_finds_a_skewed_clock_to_a_fraction_of_a_millisecond() {
        let offsets = [
            420 * SEC + 370_000_000,
            -(300 * SEC + 999_000_000),
            0,
            123_456_789,
        ];
        // Each daemon on a thread of its own: the pings block, and daemons sharing one thread
        // would hold up each other's look at the second boundary.
        let daemons = offsets.map(|offset| {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a runtime")
                    .block_on(calibrated(offset))
            })
        });
        let found = daemons.map(|daemon| daemon.join().expect("calibrated"));
        for (offset, (bounds, took)) in offsets.into_iter().zip(found) {
            assert!(
                bounds.lo <= offset && offset <= bounds.hi,
                "{offset}: {bounds:?}"
            );
            // TARGET_WIDTH with the machine to itself; round trips stretch under load.
            assert!(bounds.width() <= 2_000_000, "{bounds:?}");
            // Usually one to three seconds; a look that lands just past a boundary costs
            // another two or three.
            assert!(took < 8 * SEC, "took {took} ns");
        }
    }

    #[tokio::test]
    async fn a_daemon_without_date_headers_cannot_be_calibrated() {
        let clock = DaemonClock::new();
        let result = clock.calibrate(|| async { Ok::<_, String>(None) }).await;
        assert!(matches!(result, Err(CalibrationError::NoDate)));
    }
}
