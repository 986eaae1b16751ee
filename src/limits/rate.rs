//! Rate limiting by cost: each client has a token bucket that requests spend
//! by their estimated cost (a registered document by the cost it was given at
//! registration), refilled at a steady rate, as Shopify's GraphQL API meters
//! its clients; and a bound on the requests a client may have in flight.
//!
//! Buckets live in a bounded cache: a flood of new addresses evicts the
//! oldest buckets instead of growing memory. A bucket idle long enough to
//! refill completely is dropped, which loses nothing (a new one starts full).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// The error code of a request over its client's limit.
pub const RATE_LIMITED: &str = "RATE_LIMITED";

/// The budget of one tier of clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TierLimits {
    /// Points a bucket holds when full: the largest burst.
    pub capacity: u64,
    /// Points restored per second.
    pub restore_rate: u64,
    /// Requests one client may have in flight at once.
    pub max_concurrent: usize,
}

impl TierLimits {
    /// Reads `CAPACITY/RATE/CONCURRENT`, e.g. `5000/250/16`.
    pub fn parse(text: &str) -> Result<TierLimits, String> {
        let parts: Vec<&str> = text.trim().split('/').map(str::trim).collect();
        let [capacity, rate, concurrent] = parts.as_slice() else {
            return Err(format!(
                "{text:?} is not CAPACITY/RATE/CONCURRENT (points, points per second, \
                 requests in flight), e.g. 5000/250/16"
            ));
        };
        let number = |what: &str, value: &str| -> Result<u64, String> {
            match value.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "{what} in {text:?} must be a whole number above 0, got {value:?}"
                )),
            }
        };
        Ok(TierLimits {
            capacity: number("the capacity", capacity)?,
            restore_rate: number("the restore rate", rate)?,
            max_concurrent: number("the concurrent requests", concurrent)? as usize,
        })
    }

    /// How long an empty bucket takes to fill.
    fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(self.capacity as f64 / self.restore_rate as f64)
    }
}

impl std::fmt::Display for TierLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.capacity, self.restore_rate, self.max_concurrent
        )
    }
}

/// Which budget a request is metered against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    /// `anonymous`, `customer`, `admin`, or `client:NAME`.
    pub name: String,
    pub limits: TierLimits,
}

/// The configured tiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    pub enabled: bool,
    pub anonymous: TierLimits,
    pub customer: TierLimits,
    pub admin: TierLimits,
    /// Tiers for requests naming a client (`apollographql-client-name`).
    pub clients: Vec<(String, TierLimits)>,
    /// A header that names the client when no token does (an API key a
    /// gateway in front has checked); none by default, since a key nobody
    /// checks would give each invented key a fresh bucket.
    pub api_key_header: Option<String>,
    /// A header in which the proxy in front appends the address it saw
    /// (`x-forwarded-for`): its last entry is the client's address. None by
    /// default: the peer's address is used.
    pub address_header: Option<String>,
    /// Buckets kept at once.
    pub max_clients: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            anonymous: TierLimits {
                capacity: 5_000,
                restore_rate: 250,
                max_concurrent: 16,
            },
            customer: TierLimits {
                capacity: 10_000,
                restore_rate: 500,
                max_concurrent: 32,
            },
            admin: TierLimits {
                capacity: 50_000,
                restore_rate: 2_500,
                max_concurrent: 64,
            },
            clients: Vec::new(),
            api_key_header: None,
            address_header: None,
            max_clients: 100_000,
        }
    }
}

impl RateLimits {
    /// The tier of a request: its client name's, if one is configured, else
    /// by who the token names.
    pub fn tier(&self, client_name: &str, authenticated: bool, admin: bool) -> Tier {
        if let Some((name, limits)) = self.clients.iter().find(|(name, _)| name == client_name) {
            return Tier {
                name: format!("client:{name}"),
                limits: *limits,
            };
        }
        let (name, limits) = if admin {
            ("admin", self.admin)
        } else if authenticated {
            ("customer", self.customer)
        } else {
            ("anonymous", self.anonymous)
        };
        Tier {
            name: name.to_string(),
            limits,
        }
    }

    fn longest_refill(&self) -> Duration {
        self.clients
            .iter()
            .map(|(_, limits)| limits)
            .chain([&self.anonymous, &self.customer, &self.admin])
            .map(TierLimits::refill_time)
            .max()
            .unwrap_or_default()
            .max(Duration::from_secs(1))
    }
}

/// A bucket as the client is told about it (Shopify's `throttleStatus`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleStatus {
    pub maximum_available: u64,
    pub currently_available: u64,
    pub restore_rate: u64,
    /// Seconds until the bucket is full again.
    pub seconds_to_full: u64,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Throttled {
    /// The bucket holds less than the request costs; it will in `retry_after`.
    Cost {
        cost: u64,
        status: ThrottleStatus,
        retry_after: Duration,
    },
    /// The request costs more than the bucket can ever hold.
    CostAboveCapacity { cost: u64, status: ThrottleStatus },
    /// The client already has its most requests in flight.
    Concurrency { max: usize, status: ThrottleStatus },
}

impl Throttled {
    pub fn status(&self) -> ThrottleStatus {
        match self {
            Throttled::Cost { status, .. }
            | Throttled::CostAboveCapacity { status, .. }
            | Throttled::Concurrency { status, .. } => *status,
        }
    }

    /// When to try again, if trying again can help.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Throttled::Cost { retry_after, .. } => Some(*retry_after),
            Throttled::Concurrency { .. } => Some(Duration::from_secs(1)),
            Throttled::CostAboveCapacity { .. } => None,
        }
    }

    /// The `reason` label of the metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Throttled::Cost { .. } | Throttled::CostAboveCapacity { .. } => "cost",
            Throttled::Concurrency { .. } => "concurrency",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Throttled::Cost {
                cost,
                status,
                retry_after,
            } => format!(
                "rate limited: this request costs {cost} points and {} are available \
                 (restored at {} per second); retry in {} s",
                status.currently_available,
                status.restore_rate,
                whole_seconds(*retry_after)
            ),
            Throttled::CostAboveCapacity { cost, status } => format!(
                "rate limited: this request costs {cost} points, more than this client's \
                 budget of {} can ever hold; ask for less",
                status.maximum_available
            ),
            Throttled::Concurrency { max, .. } => format!(
                "rate limited: this client already has {max} requests in flight; retry \
                 when one has finished"
            ),
        }
    }
}

/// Rounds up to whole seconds, at least 1 (what `Retry-After` can say).
pub fn whole_seconds(duration: Duration) -> u64 {
    (duration.as_secs_f64().ceil() as u64).max(1)
}

/// A token bucket. Pure: the caller says what time it is.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    available: f64,
    updated: Instant,
}

impl Bucket {
    fn full(limits: &TierLimits, now: Instant) -> Bucket {
        Bucket {
            available: limits.capacity as f64,
            updated: now,
        }
    }

    fn refill(&mut self, limits: &TierLimits, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.available =
            (self.available + elapsed * limits.restore_rate as f64).min(limits.capacity as f64);
        self.updated = now;
    }

    fn status(&self, limits: &TierLimits) -> ThrottleStatus {
        let missing = limits.capacity as f64 - self.available;
        ThrottleStatus {
            maximum_available: limits.capacity,
            currently_available: self.available.max(0.0).floor() as u64,
            restore_rate: limits.restore_rate,
            seconds_to_full: (missing / limits.restore_rate as f64).ceil().max(0.0) as u64,
        }
    }

    /// Takes `cost` points if the bucket holds them.
    fn spend(
        &mut self,
        limits: &TierLimits,
        cost: u64,
        now: Instant,
    ) -> Result<ThrottleStatus, Throttled> {
        self.refill(limits, now);
        if cost > limits.capacity {
            return Err(Throttled::CostAboveCapacity {
                cost,
                status: self.status(limits),
            });
        }
        let cost_f = cost as f64;
        if self.available + 1e-9 < cost_f {
            let wait = (cost_f - self.available) / limits.restore_rate as f64;
            return Err(Throttled::Cost {
                cost,
                status: self.status(limits),
                retry_after: Duration::from_secs_f64(wait),
            });
        }
        self.available -= cost_f;
        Ok(self.status(limits))
    }
}

/// A clock, injectable for tests.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

struct ClientState {
    bucket: Mutex<Bucket>,
    in_flight: AtomicUsize,
}

/// The buckets of every client seen lately. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    limits: Arc<RateLimits>,
    clients: Cache<String, Arc<ClientState>>,
    clock: Clock,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter::with_clock(limits, Arc::new(Instant::now))
    }

    pub fn with_clock(limits: RateLimits, clock: Clock) -> RateLimiter {
        RateLimiter {
            clients: Cache::builder()
                .max_capacity(limits.max_clients.max(1))
                .time_to_idle(limits.longest_refill())
                .build(),
            limits: Arc::new(limits),
            clock,
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Lets a request of `client` (in `tier`) start, if the client has fewer
    /// than its most requests in flight. The admission counts it as in flight
    /// until dropped.
    pub fn admit(&self, client: &str, tier: Tier) -> Result<Admission, Throttled> {
        let state = self.client(client, &tier);
        let before = state.in_flight.fetch_add(1, Ordering::AcqRel);
        let admission = Admission(Arc::new(AdmissionInner {
            state,
            tier,
            clock: self.clock.clone(),
            spent: Mutex::new(None),
            in_flight: true,
        }));
        if before >= admission.0.tier.limits.max_concurrent {
            let status = admission.status();
            return Err(Throttled::Concurrency {
                max: admission.0.tier.limits.max_concurrent,
                status,
            });
        }
        Ok(admission)
    }

    /// The bucket of `client` (in `tier`) for an operation that is not a
    /// request in flight: a subscription, which may stay open for hours,
    /// pays its cost but does not count against the concurrency bound.
    pub fn meter(&self, client: &str, tier: Tier) -> Admission {
        Admission(Arc::new(AdmissionInner {
            state: self.client(client, &tier),
            tier,
            clock: self.clock.clone(),
            spent: Mutex::new(None),
            in_flight: false,
        }))
    }

    fn client(&self, client: &str, tier: &Tier) -> Arc<ClientState> {
        let now = (self.clock)();
        self.clients
            .get_with(format!("{}|{client}", tier.name), || {
                Arc::new(ClientState {
                    bucket: Mutex::new(Bucket::full(&tier.limits, now)),
                    in_flight: AtomicUsize::new(0),
                })
            })
    }
}

/// A request let in (in flight until the last clone is dropped), or a
/// subscription's [`RateLimiter::meter`]. Cheap to clone.
#[derive(Clone)]
pub struct Admission(Arc<AdmissionInner>);

struct AdmissionInner {
    state: Arc<ClientState>,
    tier: Tier,
    clock: Clock,
    /// What spending the request's cost gave, once it was spent: the cost
    /// and the outcome.
    spent: Mutex<Option<(u64, Result<ThrottleStatus, Throttled>)>>,
    /// Counted among the client's requests in flight.
    in_flight: bool,
}

impl Drop for AdmissionInner {
    fn drop(&mut self) {
        if self.in_flight {
            self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Admission {
    pub fn tier(&self) -> &Tier {
        &self.0.tier
    }

    /// Spends the request's cost (at least 1: every request costs something).
    pub fn spend(&self, cost: u64) -> Result<ThrottleStatus, Throttled> {
        let limits = self.0.tier.limits;
        let cost = cost.max(1);
        let result = lock(&self.0.state.bucket).spend(&limits, cost, (self.0.clock)());
        *lock(&self.0.spent) = Some((cost, result));
        result
    }

    /// What [`Admission::spend`] gave, if the cost was spent.
    pub fn spent(&self) -> Option<Result<ThrottleStatus, Throttled>> {
        lock(&self.0.spent).map(|(_, result)| result)
    }

    /// The cost [`Admission::spend`] was asked for, if it was.
    pub fn cost(&self) -> Option<u64> {
        lock(&self.0.spent).map(|(cost, _)| cost)
    }

    /// The same client's bucket for an operation that is not in flight
    /// (see [`RateLimiter::meter`]).
    pub fn meter(&self) -> Admission {
        Admission(Arc::new(AdmissionInner {
            state: self.0.state.clone(),
            tier: self.0.tier.clone(),
            clock: self.0.clock.clone(),
            spent: Mutex::new(None),
            in_flight: false,
        }))
    }

    /// The bucket now.
    pub fn status(&self) -> ThrottleStatus {
        let limits = self.0.tier.limits;
        let mut bucket = lock(&self.0.state.bucket);
        bucket.refill(&limits, (self.0.clock)());
        bucket.status(&limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: TierLimits = TierLimits {
        capacity: 100,
        restore_rate: 10,
        max_concurrent: 2,
    };

    #[test]
    fn a_bucket_spends_and_refills_with_the_clock() {
        let start = Instant::now();
        let mut bucket = Bucket::full(&LIMITS, start);
        let status = bucket.spend(&LIMITS, 60, start).unwrap();
        assert_eq!(status.currently_available, 40);
        assert_eq!(status.seconds_to_full, 6);
        match bucket.spend(&LIMITS, 60, start) {
            Err(Throttled::Cost { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(2))
            }
            other => panic!("{other:?}"),
        }
        // Two seconds later the 20 missing points are back.
        let later = start + Duration::from_secs(2);
        assert_eq!(
            bucket
                .spend(&LIMITS, 60, later)
                .unwrap()
                .currently_available,
            0
        );
        // Never fuller than its capacity.
        let much_later = later + Duration::from_secs(3600);
        bucket.refill(&LIMITS, much_later);
        assert_eq!(bucket.status(&LIMITS).currently_available, 100);
        assert!(matches!(
            bucket.spend(&LIMITS, 101, much_later),
            Err(Throttled::CostAboveCapacity { cost: 101, .. })
        ));
    }

    #[test]
    fn clients_have_their_own_buckets_and_concurrency() {
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock_now = now.clone();
        let limiter =
            RateLimiter::with_clock(RateLimits::default(), Arc::new(move || *lock(&clock_now)));
        let tier = Tier {
            name: "anonymous".into(),
            limits: LIMITS,
        };
        let a = limiter.admit("ip:a", tier.clone()).unwrap();
        a.spend(100).unwrap();
        assert!(a.spend(1).is_err());
        let b = limiter.admit("ip:b", tier.clone()).unwrap();
        assert_eq!(b.spend(100).unwrap().currently_available, 0);
        // A third request in flight for `a` is one too many; the first two
        // holding theirs, then one finishing, lets the next in.
        let a2 = limiter.admit("ip:a", tier.clone()).unwrap();
        assert!(matches!(
            limiter.admit("ip:a", tier.clone()),
            Err(Throttled::Concurrency { max: 2, .. })
        ));
        drop(a2);
        assert!(limiter.admit("ip:a", tier.clone()).is_ok());
        // A zero-cost request still costs a point.
        *lock(&now) += Duration::from_millis(100);
        assert_eq!(a.spend(0).unwrap().currently_available, 0);
        assert_eq!(a.cost(), Some(1));
        // Subscriptions pay from the same bucket without being in flight.
        let held: Vec<_> = (0..5)
            .map(|_| limiter.meter("ip:a", tier.clone()))
            .collect();
        assert!(held[0].spend(1).is_err());
        let _second = limiter.admit("ip:a", tier.clone()).unwrap();
        assert!(a.meter().spend(1).is_err());
    }

    #[test]
    fn tiers_are_chosen_by_client_name_then_token() {
        let limits = RateLimits {
            clients: vec![("ios".into(), LIMITS)],
            ..Default::default()
        };
        assert_eq!(limits.tier("ios", false, false).name, "client:ios");
        assert_eq!(limits.tier("web", true, true).name, "admin");
        assert_eq!(limits.tier("", true, false).name, "customer");
        assert_eq!(limits.tier("", false, false).name, "anonymous");
        assert_eq!(TierLimits::parse("100/10/2").unwrap(), LIMITS);
        assert!(TierLimits::parse("100/10").is_err());
        assert!(TierLimits::parse("100/0/2").is_err());
        assert_eq!(LIMITS.to_string(), "100/10/2");
    }
}
