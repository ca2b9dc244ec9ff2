//! Rate-limit decisions in Redis, coalesced: the decisions of every request in flight go
//! out in as few script calls as possible.
//!
//! Each decision is one key's read-modify-write inside the decide script, so any number
//! of them can share a call and stay exact: the script takes them in order, a repeated key
//! seeing what its predecessor left. Coalescing is group commit. While [`MAX_IN_FLIGHT`]
//! calls are out, new decisions queue, and the next call takes every queued one (up to
//! [`MAX_KEYS`]); before it goes, the other requests of the same scheduler tick join it.
//! An idle core sends a lone decision at once; a busy one sends fewer, larger calls, which
//! cost Redis and the core far less per decision than a call each (`scripts/bench-ratelimit`:
//! ten keys in a call decide about twice as many per second as ten calls of one key).
//! Should a call fail, every request in it gets the error, and its policies' failure modes
//! decide, as for a call of its own.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};
use tokio::sync::{Semaphore, mpsc, oneshot};
use verge_shared::gcra::{self, Decision, Policy};
use verge_shared::ratelimit::Limit;
use verge_shared::ratelimit::window::{Kind, WindowState};

use super::backend;
use crate::cache::CacheError;

/// Script calls out at once; more decisions wait and go together in the next.
const MAX_IN_FLIGHT: usize = 2;
/// A call stops taking queued requests once it holds this many keys.
const MAX_KEYS: usize = 256;

/// Rate-limit decisions, several per call: `verge_shared::gcra::decide` and
/// `verge_shared::ratelimit::window::decide`, mirrored step for step (doubles in the same
/// order, so the estimate agrees bit for bit). KEYS are the buckets; ARGV holds five values
/// per key: kind (0 token bucket, 1 fixed window, 2 sliding window), then for a token bucket
/// the emission interval and capacity (µs), for a window the period (µs) and limit, then
/// the decision's now (µs), then the cost. Each key carries its own now because one call
/// carries the decisions of many requests. Returns four numbers per key: the state
/// it found (a token bucket's stored TAT, 0 = none; a window's index, -1 = none, and its
/// current and previous counts) and 1 when the request was counted. A token bucket is a
/// string, a window a hash of `w`, `c`, `p`.
const DECIDE: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local at = 1 + (i - 1) * 5
  local kind = ARGV[at]
  local now = tonumber(ARGV[at + 3])
  local cost = tonumber(ARGV[at + 4])
  if kind == '0' then
    local interval, capacity = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    local stored = tonumber(redis.call('GET', key) or '0')
    local tat = stored
    if tat < now then tat = now end
    local new_tat = tat + interval * cost
    local counted = 0
    if now >= new_tat - capacity then
      redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
      counted = 1
    end
    table.insert(out, stored); table.insert(out, 0); table.insert(out, 0); table.insert(out, counted)
  else
    local period, limit = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    local stored = redis.call('HMGET', key, 'w', 'c', 'p')
    local w = tonumber(stored[1])
    local c = tonumber(stored[2]) or 0
    local p = tonumber(stored[3]) or 0
    local elapsed = math.fmod(now, period)
    local index = (now - elapsed) / period
    local current, previous = 0, 0
    if w then
      if w >= index then
        index = w
        current, previous = c, p
      elseif w + 1 == index then
        previous = c
      end
    end
    local used = current
    if kind == '2' then used = previous * ((period - elapsed) / period) + current end
    local counted = 0
    if cost <= limit and used + cost <= limit then
      redis.call('HSET', KEYS[i], 'w', string.format('%d', index), 'c', string.format('%d', current + cost),
        'p', string.format('%d', previous))
      redis.call('PEXPIRE', KEYS[i], string.format('%d', math.ceil(2 * period / 1000)))
      counted = 1
    end
    table.insert(out, w or -1); table.insert(out, c); table.insert(out, p); table.insert(out, counted)
  end
end
return out
";

/// What the decide script counts in, by algorithm.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bucket {
    Gcra(Policy),
    Window(Limit, Kind),
}

impl Bucket {
    pub(super) fn of(limit: &Limit) -> Bucket {
        match limit.window() {
            Some(kind) => Bucket::Window(*limit, kind),
            None => Bucket::Gcra(limit.gcra()),
        }
    }
}

/// One decision as the script takes it: the prefixed key, its bucket, the cost and now.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) key: String,
    pub(super) bucket: Bucket,
    pub(super) cost: u32,
    pub(super) now_us: u64,
}

impl Request {
    fn push_to(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(&self.key);
        match self.bucket {
            Bucket::Gcra(policy) => invocation.arg("0").arg(policy.emission_interval_us()).arg(policy.capacity_us()),
            Bucket::Window(limit, kind) => {
                invocation.arg(if kind == Kind::Sliding { "2" } else { "1" }).arg(limit.period_us()).arg(limit.limit)
            }
        };
        invocation.arg(self.now_us).arg(self.cost);
    }

    /// The decision, from the state the script found (four numbers) and whether it counted:
    /// the figures come from the one Rust function, given what the script saw.
    fn decision(&self, state: &[i64]) -> Decision {
        let decision = match self.bucket {
            Bucket::Gcra(policy) => {
                let stored = state[0] as u64;
                gcra::decide(policy, (stored != 0).then_some(stored), self.now_us, self.cost).0
            }
            Bucket::Window(limit, _) => {
                let before = u64::try_from(state[0]).ok().map(|window| WindowState {
                    window,
                    current: state[1] as u64,
                    previous: state[2] as u64,
                });
                limit.decide_window(before, self.now_us, self.cost).0
            }
        };
        Decision { allowed: state[3] == 1, ..decision }
    }
}

type Reply = oneshot::Sender<Result<Vec<Decision>, CacheError>>;

/// The handle requests decide through; the queue behind it lives in a task of its own.
#[derive(Debug)]
pub(super) struct Decider {
    queue: mpsc::UnboundedSender<(Vec<Request>, Reply)>,
}

fn stopped() -> CacheError {
    CacheError::Backend("the rate-limit decision queue has stopped".into())
}

impl Decider {
    /// Starts the queue's task on the current tokio runtime.
    pub(super) fn start(conn: ConnectionManager) -> Decider {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(pending, conn, Arc::new(Script::new(DECIDE))));
        Decider { queue }
    }

    /// Decides `requests` in order, atomically each, in some script call.
    pub(super) async fn decide(&self, requests: Vec<Request>) -> Result<Vec<Decision>, CacheError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.queue.send((requests, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn dispatch(
    mut pending: mpsc::UnboundedReceiver<(Vec<Request>, Reply)>,
    conn: ConnectionManager,
    script: Arc<Script>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = pending.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        // Let the other requests of this scheduler tick queue theirs first: under load they
        // arrive together, and one call for all of them beats one each.
        tokio::task::yield_now().await;
        let mut keys = first.0.len();
        let mut batch = vec![first];
        while keys < MAX_KEYS {
            let Ok(next) = pending.try_recv() else { break };
            keys += next.0.len();
            batch.push(next);
        }
        let (mut conn, script) = (conn.clone(), Arc::clone(&script));
        tokio::spawn(async move {
            call(&mut conn, &script, batch).await;
            drop(slot);
        });
    }
}

/// One script call for every request of `batch`; each gets its own decisions, or the error.
async fn call(conn: &mut ConnectionManager, script: &Script, batch: Vec<(Vec<Request>, Reply)>) {
    let mut invocation = script.prepare_invoke();
    for request in batch.iter().flat_map(|(requests, _)| requests) {
        request.push_to(&mut invocation);
    }
    let keys: usize = batch.iter().map(|(requests, _)| requests.len()).sum();
    let found: Result<Vec<i64>, CacheError> = invocation.invoke_async(conn).await.map_err(backend);
    let found = found.and_then(|found| match found.len() == 4 * keys {
        true => Ok(found),
        false => Err(CacheError::Backend(format!("decide script answered {} numbers for {keys} keys", found.len()))),
    });
    match found {
        Ok(found) => {
            let mut states = found.chunks(4);
            for (requests, reply) in batch {
                let decisions = requests.iter().zip(states.by_ref()).map(|(r, state)| r.decision(state)).collect();
                let _ = reply.send(Ok(decisions));
            }
        }
        Err(err) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
