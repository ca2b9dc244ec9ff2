//! A policy's limit: how many requests per how long, counted by which algorithm, and the
//! JSON checks a limit and a policy share (every problem located by JSON pointer).

use serde_json::{Map, Value, json};

use super::Invalid;
use crate::gcra;
use crate::ratelimit::window::{self, Kind, WindowState};

/// The counting algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// GCRA: a token bucket of `burst` refilled at `limit` per `period`.
    TokenBucket,
    /// Cloudflare's estimate of the last `period`: smooth, two counters.
    SlidingWindow,
    /// `limit` per calendar window of `period`: one counter, exact per window.
    FixedWindow,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::TokenBucket, Algorithm::SlidingWindow, Algorithm::FixedWindow];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::FixedWindow => "fixed_window",
        }
    }

    fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "gcra" => Some(Algorithm::TokenBucket),
            _ => Algorithm::ALL.into_iter().find(|a| a.as_str() == name),
        }
    }
}

/// How many requests per how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub algorithm: Algorithm,
    pub limit: u32,
    pub period_secs: u32,
    /// Token bucket only: the most requests at once (defaults to `limit`).
    pub burst: u32,
}

/// The longest period a policy may count over: a year.
pub const MAX_PERIOD_SECS: u32 = 366 * 24 * 3600;
/// The most requests a policy may allow per period.
pub const MAX_LIMIT: u32 = 1_000_000_000;

impl Limit {
    pub fn period_us(&self) -> u64 {
        u64::from(self.period_secs) * 1_000_000
    }

    pub fn gcra(&self) -> gcra::Policy {
        gcra::Policy { limit: self.limit, period_us: self.period_us(), burst: self.burst }
    }

    /// The window kind, for the window algorithms.
    pub fn window(&self) -> Option<Kind> {
        match self.algorithm {
            Algorithm::TokenBucket => None,
            Algorithm::SlidingWindow => Some(Kind::Sliding),
            Algorithm::FixedWindow => Some(Kind::Fixed),
        }
    }

    /// Decides against a window bucket (panics on a token bucket: use [`Limit::gcra`]).
    pub fn decide_window(
        &self,
        state: Option<WindowState>,
        now_us: u64,
        cost: u32,
    ) -> (gcra::Decision, Option<WindowState>) {
        let kind = self.window().expect("a window algorithm");
        window::decide(kind, self.limit, self.period_us(), state, now_us, cost)
    }

    pub(super) fn parse(value: &Value, at: &str, errors: &mut Vec<Invalid>) -> Option<Limit> {
        let Some(object) = value.as_object() else {
            errors.push(Invalid::new(at, "must be an object"));
            return None;
        };
        let before = errors.len();
        allow_only(object, at, &["algorithm", "limit", "period_seconds", "burst"], errors);
        let algorithm = match object.get("algorithm") {
            None => Some(Algorithm::TokenBucket),
            Some(Value::String(name)) => Algorithm::parse(name).or_else(|| {
                errors.push(Invalid::new(
                    format!("{at}/algorithm"),
                    format!("unknown algorithm `{name}`; use token_bucket, sliding_window or fixed_window"),
                ));
                None
            }),
            Some(_) => {
                errors.push(Invalid::new(format!("{at}/algorithm"), "must be a string"));
                None
            }
        };
        let limit = count(object.get("limit"), &format!("{at}/limit"), MAX_LIMIT, true, errors);
        let period =
            count(object.get("period_seconds"), &format!("{at}/period_seconds"), MAX_PERIOD_SECS, true, errors);
        let burst = count(object.get("burst"), &format!("{at}/burst"), MAX_LIMIT, false, errors);
        if let (Some(algorithm), Some(_)) = (algorithm, burst)
            && algorithm != Algorithm::TokenBucket
        {
            errors.push(Invalid::new(
                format!("{at}/burst"),
                format!("only token_bucket has a burst; {} counts whole windows", algorithm.as_str()),
            ));
        }
        if errors.len() > before {
            return None;
        }
        let (algorithm, limit, period_secs) = (algorithm?, limit?, period?);
        if u64::from(period_secs) * 1_000_000 < u64::from(limit) && algorithm == Algorithm::TokenBucket {
            errors.push(Invalid::new(format!("{at}/limit"), "more than one request per microsecond cannot be counted"));
            return None;
        }
        Some(Limit { algorithm, limit, period_secs, burst: burst.unwrap_or(limit) })
    }

    pub(super) fn to_value(self) -> Value {
        let mut object = json!({
            "algorithm": self.algorithm.as_str(),
            "limit": self.limit,
            "period_seconds": self.period_secs,
        });
        if self.algorithm == Algorithm::TokenBucket {
            object["burst"] = json!(self.burst);
        }
        object
    }
}

/// An integer in 1..=max (or absent, when not `required`).
pub(super) fn count(
    value: Option<&Value>,
    at: &str,
    max: u32,
    required: bool,
    errors: &mut Vec<Invalid>,
) -> Option<u32> {
    match value {
        None if required => errors.push(Invalid::new(at, "is required")),
        None => {}
        Some(v) => match v.as_u64() {
            Some(n) if (1..=u64::from(max)).contains(&n) => return Some(n as u32),
            _ => errors.push(Invalid::new(at, format!("must be a whole number from 1 to {max}"))),
        },
    }
    None
}

pub(super) fn allow_only(object: &Map<String, Value>, at: &str, known: &[&str], errors: &mut Vec<Invalid>) {
    for key in object.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(Invalid::new(
                format!("{at}/{}", pointer_escape(key)),
                format!("unknown member; known: {}", known.join(", ")),
            ));
        }
    }
}

pub(super) fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
