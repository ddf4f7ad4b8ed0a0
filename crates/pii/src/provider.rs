//! The interface for model calls: a provider trait that reports usage (model, tokens, estimated
//! cost) for the audit log, and the per-user rate limit on calls (5 per 5 minutes by default).
//! No I/O here: implementations of [`ModelProvider`] live with the HTTP client; the limiter takes
//! the time as an input.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;

use chrono::{DateTime, Duration, Utc};

/// One call to a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRequest {
    /// The model name.
    pub model: String,
    /// The system prompt (including an [`crate::envelope::Envelope`]'s instruction).
    pub system: String,
    /// The user prompt (including wrapped untrusted text).
    pub prompt: String,
    /// Upper bound on output tokens.
    pub max_output_tokens: u32,
}

/// What a call used, as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The model that answered.
    pub model: String,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Estimated cost in millionths of a US dollar.
    pub cost_micro_usd: u64,
}

/// A model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelResponse {
    /// The generated text (check it with [`crate::envelope::check_output`] before acting on it).
    pub text: String,
    /// What the call used.
    pub usage: Usage,
}

/// A model provider. Implementations do the network call; every answer reports its usage.
pub trait ModelProvider: Send + Sync {
    /// The provider's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Sends one request.
    fn complete(&self, request: &ModelRequest) -> impl Future<Output = Result<ModelResponse, Self::Error>> + Send;
}

/// A model's list prices, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Dollars per million input tokens.
    pub input_per_million: f64,
    /// Dollars per million output tokens.
    pub output_per_million: f64,
}

impl Price {
    /// The estimated cost of `input` and `output` tokens, in millionths of a dollar (rounded up).
    pub fn cost_micro_usd(&self, input: u64, output: u64) -> u64 {
        // Dollars per million tokens are millionths of a dollar per token.
        let micro = input as f64 * self.input_per_million + output as f64 * self.output_per_million;
        if micro.is_finite() && micro > 0.0 {
            micro.ceil() as u64
        } else {
            0
        }
    }
}

/// A rough token count for budgeting before a call: one token per four bytes of UTF-8, the
/// usual rule of thumb for English with BPE tokenisers.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// At most `max_calls` per user in any `per` (sliding window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls allowed in a window.
    pub max_calls: usize,
    /// The window.
    pub per: Duration,
}

impl Default for RateLimit {
    /// 5 calls per 5 minutes (the generation-endpoint limit of the product brief).
    fn default() -> RateLimit {
        RateLimit { max_calls: 5, per: Duration::minutes(5) }
    }
}

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("model call limit reached; retry after {} s", .0.num_seconds())]
pub struct RetryAfter(pub Duration);

/// Per-user sliding-window limiter over call times.
#[derive(Debug, Clone)]
pub struct Limiter<K> {
    limit: RateLimit,
    calls: HashMap<K, VecDeque<DateTime<Utc>>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter with `limit`.
    pub fn new(limit: RateLimit) -> Limiter<K> {
        Limiter { limit, calls: HashMap::new() }
    }

    /// Records a call by `user` at `now`, or refuses it with the time until a slot frees.
    pub fn try_acquire(&mut self, user: &K, now: DateTime<Utc>) -> Result<(), RetryAfter> {
        let window = self.calls.entry(user.clone()).or_default();
        while window.front().is_some_and(|&t| t + self.limit.per <= now) {
            window.pop_front();
        }
        if window.len() >= self.limit.max_calls {
            let oldest = window.front().copied().unwrap_or(now);
            return Err(RetryAfter((oldest + self.limit.per - now).max(Duration::zero())));
        }
        window.push_back(now);
        Ok(())
    }

    /// Forgets users whose calls are all older than the window (call now and then to bound memory).
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let per = self.limit.per;
        self.calls.retain(|_, w| w.back().is_some_and(|&t| t + per > now));
    }
}

/// Why a metered call did not return an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E: std::error::Error + 'static> {
    /// The user's limit was reached; nothing was sent.
    #[error(transparent)]
    Limited(#[from] RetryAfter),
    /// The provider failed.
    #[error("model provider: {0}")]
    Provider(#[source] E),
}

/// Checks `user`'s limit at `now`, then sends `request`. The answer carries its [`Usage`] for the
/// caller's audit record.
pub async fn call<P: ModelProvider, K: Hash + Eq + Clone>(
    provider: &P,
    limiter: &mut Limiter<K>,
    user: &K,
    now: DateTime<Utc>,
    request: &ModelRequest,
) -> Result<ModelResponse, CallError<P::Error>> {
    limiter.try_acquire(user, now)?;
    provider.complete(request).await.map_err(CallError::Provider)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn five_calls_per_five_minutes_per_user_then_a_retry_time() {
        let mut limiter = Limiter::new(RateLimit::default());
        for i in 0..5 {
            limiter.try_acquire(&"alice", t(i * 10)).unwrap();
        }
        assert_eq!(limiter.try_acquire(&"alice", t(60)), Err(RetryAfter(Duration::seconds(240))));
        limiter.try_acquire(&"bob", t(60)).unwrap();
        // The first call leaves the window at 300 s.
        limiter.try_acquire(&"alice", t(300)).unwrap();
        assert!(limiter.try_acquire(&"alice", t(301)).is_err());
        limiter.prune(t(10_000));
        assert!(limiter.calls.is_empty());
    }

    #[test]
    fn costs_follow_the_price_per_million_tokens() {
        let price = Price { input_per_million: 3.0, output_per_million: 15.0 };
        // 1,000 input tokens at $3/M = $0.003; 500 output at $15/M = $0.0075.
        assert_eq!(price.cost_micro_usd(1_000, 500), 10_500);
        assert_eq!(price.cost_micro_usd(0, 0), 0);
        assert_eq!(estimate_tokens("abcdefgh"), 2);
    }

    #[derive(Debug)]
    struct Echo;

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    impl ModelProvider for Echo {
        type Error = Never;
        async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, Never> {
            let usage = Usage {
                model: request.model.clone(),
                input_tokens: estimate_tokens(&request.prompt),
                output_tokens: 1,
                cost_micro_usd: 1,
            };
            Ok(ModelResponse { text: request.prompt.clone(), usage })
        }
    }

    /// Runs a future that never waits (the echo provider's) with one poll.
    fn block<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => panic!("the echo provider never waits"),
        }
    }

    #[test]
    fn a_metered_call_returns_usage_and_a_limited_one_sends_nothing() {
        let request =
            ModelRequest { model: "m".into(), system: String::new(), prompt: "abcd".into(), max_output_tokens: 8 };
        let mut limiter = Limiter::new(RateLimit { max_calls: 1, per: Duration::minutes(5) });
        let answer = block(call(&Echo, &mut limiter, &1u32, t(0), &request)).unwrap();
        assert_eq!(answer.usage, Usage { model: "m".into(), input_tokens: 1, output_tokens: 1, cost_micro_usd: 1 });
        assert!(matches!(block(call(&Echo, &mut limiter, &1u32, t(1), &request)), Err(CallError::Limited(_))));
    }
}
