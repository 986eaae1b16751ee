//! One execution for every subscriber of the same subscription: the first
//! subscriber's execution runs in a task of its own (the leader), each of
//! its results is rendered to JSON once, and every subscriber of that
//! [`Key`] receives the same bytes. An event then costs one load of the
//! committed state and one rendering however many watch it, and a
//! subscriber holds no execution of its own: only a receiver of the shared
//! results.
//!
//! Two subscriptions share only when their results are equal by
//! construction: the same document, operation, variables and extensions,
//! run for the same viewer through the same door (router or not). So a
//! customer's order is never sent to anyone but that customer's own
//! connections, and anonymous viewers of a product share one execution.
//!
//! Back-pressure is per subscriber: the leader never waits, since results
//! go into a ring of the last `--event-buffer` results (a [`Feed`]), which
//! each subscriber reads at its connection's pace. One that falls further
//! behind is told how many it missed and is handed the latest result, which
//! is the current state, as when it falls behind on the event bus itself.
//!
//! A subscriber is polled by its connection's task directly (no future is
//! kept or boxed per subscriber), and an event wakes exactly the tasks that
//! wait for it: with 10,000 subscribers of one product, what each costs per
//! event is what decides how soon the last one has it.
//!
//! The leader ends with the last subscriber that leaves (or when its
//! subscription ends, which completes every subscriber).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures::stream::BoxStream;
use futures::StreamExt;

use crate::auth::Viewer;
use crate::graph::RouterAccess;

/// What makes two subscriptions the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub query: String,
    pub operation_name: Option<String>,
    /// The variables and extensions as JSON text.
    pub variables: String,
    pub extensions: String,
    /// A registered document skips the checks an unregistered one passes.
    pub registered: bool,
    pub viewer: Viewer,
    pub router: RouterAccess,
}

/// A result, rendered once for all its subscribers.
#[derive(Clone, Debug)]
pub(super) struct Rendered {
    pub json: Arc<str>,
    /// It carries errors (each subscriber adds its request id to them).
    pub errors: bool,
}

/// What a subscriber receives.
#[derive(Debug)]
pub(super) enum Received {
    Result(Rendered),
    /// It fell behind: `missed` results were dropped for it; `latest` is
    /// the newest there is.
    Dropped {
        missed: u64,
        latest: Option<Rendered>,
    },
}

/// The shared executions running now. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    inner: Arc<Mutex<Leaders>>,
    /// Results a subscriber may fall behind by.
    buffer: usize,
}

#[derive(Default)]
struct Leaders {
    running: HashMap<Arc<Key>, Leader>,
    /// Tells a leader from a later one of the same key.
    next_id: u64,
}

struct Leader {
    id: u64,
    results: Arc<Feed>,
    members: usize,
    task: tokio::task::AbortHandle,
    /// What the first subscriber paid (each later one pays the same).
    cost: Option<u64>,
}

impl Fanout {
    pub fn new(buffer: usize) -> Fanout {
        Fanout {
            inner: Default::default(),
            buffer: buffer.max(1),
        }
    }

    fn leaders(&self) -> MutexGuard<'_, Leaders> {
        // Every change to the map is one insert, remove or count: consistent
        // even if a holder panicked.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shared executions running now (a test's window on the cleanup).
    pub fn executions(&self) -> usize {
        self.leaders().running.len()
    }

    /// Joins the execution of `key` if one runs: the new subscriber, and the
    /// cost its first subscriber paid.
    pub(super) fn join(&self, key: &Key) -> Option<(Member, Option<u64>)> {
        let mut leaders = self.leaders();
        let key = leaders.running.get_key_value(key)?.0.clone();
        let cost = leaders.running.get(&key)?.cost;
        Some((self.member(&mut leaders, key)?, cost))
    }

    /// A new member of the running execution of `key`.
    fn member(&self, leaders: &mut Leaders, key: Arc<Key>) -> Option<Member> {
        let leader = leaders.running.get_mut(&key)?;
        leader.members += 1;
        Some(Member {
            reader: Reader::of(&leader.results),
            _membership: Membership {
                fanout: self.clone(),
                key,
                id: leader.id,
            },
        })
    }

    /// Shares `results`, an execution that is in place (subscribed to its
    /// events), under `key`, and makes its subscriber the first member. If
    /// another execution of `key` started meanwhile, the subscriber joins
    /// that one and `results` is dropped.
    pub(super) fn lead(
        &self,
        key: Key,
        mut results: BoxStream<'static, Rendered>,
        cost: Option<u64>,
    ) -> Member {
        let mut leaders = self.leaders();
        if let Some((running, _)) = leaders.running.get_key_value(&key) {
            let running = running.clone();
            if let Some(member) = self.member(&mut leaders, running) {
                return member;
            }
        }
        let key = Arc::new(key);
        let id = leaders.next_id;
        leaders.next_id += 1;
        let feed = Arc::new(Feed::new(self.buffer));
        let reader = Reader::of(&feed);
        let publisher = feed.clone();
        let (fanout, ended) = (self.clone(), key.clone());
        // Spawned under the lock: if the execution ends at once, its end
        // waits for the lock and finds the entry it must remove.
        let task = tokio::spawn(async move {
            while let Some(result) = results.next().await {
                publisher.publish(result);
            }
            publisher.end();
            fanout.end(&ended, id);
        });
        leaders.running.insert(
            key.clone(),
            Leader {
                id,
                results: feed,
                members: 1,
                task: task.abort_handle(),
                cost,
            },
        );
        Member {
            reader,
            _membership: Membership {
                fanout: self.clone(),
                key,
                id,
            },
        }
    }

    /// The execution's stream ended: its subscribers complete once they
    /// have read what it sent.
    fn end(&self, key: &Key, id: u64) {
        let mut leaders = self.leaders();
        if leaders.running.get(key).is_some_and(|l| l.id == id) {
            leaders.running.remove(key);
        }
    }

    /// A subscriber left: the last one ends the execution.
    fn leave(&self, key: &Key, id: u64) {
        let mut leaders = self.leaders();
        let Some(leader) = leaders.running.get_mut(key).filter(|l| l.id == id) else {
            return;
        };
        leader.members -= 1;
        if leader.members == 0 {
            if let Some(leader) = leaders.running.remove(key) {
                leader.task.abort();
            }
        }
    }
}

/// One subscriber of a shared execution.
pub(super) struct Member {
    reader: Reader,
    _membership: Membership,
}

/// Counts a subscriber among its execution's members until dropped.
struct Membership {
    fanout: Fanout,
    key: Arc<Key>,
    id: u64,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.fanout.leave(&self.key, self.id);
    }
}

impl Member {
    /// The next result; `None` once the execution ended and every result
    /// was read. Waiting, the task of `cx` is woken when there is one.
    pub(super) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Received>> {
        self.reader.poll_next(cx)
    }

    /// The next result (see [`Member::poll_next`]).
    #[cfg(test)]
    async fn next(&mut self) -> Option<Received> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// The results of one execution: the newest few, for subscribers that read
/// them at their own pace, and the wakers of those waiting for the next.
struct Feed(Mutex<FeedState>);

struct FeedState {
    /// Results published so far (the sequence number of the next).
    published: u64,
    /// The newest results, at most `capacity`: the oldest of them is
    /// number `published - ring.len()`.
    ring: VecDeque<Rendered>,
    capacity: usize,
    ended: bool,
    /// By reader: the waker of one that waits for the next result.
    waiting: Vec<Option<Waker>>,
    /// Places in `waiting` that no reader holds.
    free: Vec<usize>,
}

impl Feed {
    fn new(capacity: usize) -> Feed {
        Feed(Mutex::new(FeedState {
            published: 0,
            ring: VecDeque::with_capacity(capacity),
            capacity,
            ended: false,
            waiting: Vec::new(),
            free: Vec::new(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, FeedState> {
        // Every change under the lock leaves the state whole.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a result (the oldest goes when the ring is full) and wakes the
    /// readers waiting for it. Never waits for a reader.
    fn publish(&self, result: Rendered) {
        let woken = {
            let mut state = self.state();
            if state.ring.len() == state.capacity {
                state.ring.pop_front();
            }
            state.ring.push_back(result);
            state.published += 1;
            state.take_waiting()
        };
        // Outside the lock: a woken reader may run at once on another thread.
        woken.into_iter().for_each(Waker::wake);
    }

    /// No result follows: readers end once they read what is there.
    fn end(&self) {
        let woken = {
            let mut state = self.state();
            state.ended = true;
            state.take_waiting()
        };
        woken.into_iter().for_each(Waker::wake);
    }
}

impl FeedState {
    fn take_waiting(&mut self) -> Vec<Waker> {
        self.waiting.iter_mut().filter_map(Option::take).collect()
    }
}

/// One reader of a [`Feed`]: it reads results published after it came.
struct Reader {
    feed: Arc<Feed>,
    /// The number of the next result it reads.
    next: u64,
    /// Its place in the feed's `waiting`.
    place: usize,
}

impl Reader {
    fn of(feed: &Arc<Feed>) -> Reader {
        let mut state = feed.state();
        let place = match state.free.pop() {
            Some(place) => place,
            None => {
                state.waiting.push(None);
                state.waiting.len() - 1
            }
        };
        Reader {
            feed: feed.clone(),
            next: state.published,
            place,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Received>> {
        let mut state = self.feed.state();
        let unread = state.published - self.next;
        if unread == 0 {
            if state.ended {
                return Poll::Ready(None);
            }
            let waiting = &mut state.waiting[self.place];
            if !waiting.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waiting = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let held = state.ring.len() as u64;
        if unread > held {
            // Fell behind the ring: skip to the newest, counting the rest.
            self.next = state.published;
            return Poll::Ready(Some(Received::Dropped {
                missed: unread - 1,
                latest: state.ring.back().cloned(),
            }));
        }
        let result = state.ring[(held - unread) as usize].clone();
        self.next += 1;
        Poll::Ready(Some(Received::Result(result)))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.feed.state();
        state.waiting[self.place] = None;
        state.free.push(self.place);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(customer: Option<i64>) -> Key {
        Key {
            query: "subscription { productUpdated(id: 1) { id } }".into(),
            operation_name: None,
            variables: "{}".into(),
            extensions: "null".into(),
            registered: false,
            viewer: Viewer {
                customer_id: customer,
                admin: false,
            },
            router: RouterAccess::Open,
        }
    }

    fn rendered(n: u32) -> Rendered {
        Rendered {
            json: format!("{{\"data\":{n}}}").into(),
            errors: false,
        }
    }

    fn json(received: Option<Received>) -> String {
        match received {
            Some(Received::Result(result)) => result.json.to_string(),
            other => panic!("{other:?}"),
        }
    }

    /// An execution that yields what is sent to it.
    fn execution() -> (
        tokio::sync::mpsc::UnboundedSender<Rendered>,
        BoxStream<'static, Rendered>,
    ) {
        let (send, receive) = tokio::sync::mpsc::unbounded_channel();
        let stream = futures::stream::unfold(receive, |mut receive| async move {
            Some((receive.recv().await?, receive))
        });
        (send, stream.boxed())
    }

    #[tokio::test]
    async fn subscribers_of_one_key_share_one_execution_and_others_do_not() {
        let fanout = Fanout::new(4);
        let (results, stream) = execution();
        let mut first = fanout.lead(key(None), stream, Some(3));
        let (mut second, cost) = fanout.join(&key(None)).unwrap();
        assert_eq!(cost, Some(3));
        assert!(fanout.join(&key(Some(1))).is_none(), "another viewer");
        results.send(rendered(1)).unwrap();
        assert_eq!(json(first.next().await), "{\"data\":1}");
        assert_eq!(json(second.next().await), "{\"data\":1}");
        // The last subscriber leaving ends the execution.
        drop(first);
        assert_eq!(fanout.executions(), 1);
        drop(second);
        assert_eq!(fanout.executions(), 0);
        tokio::task::yield_now().await;
        assert!(results.is_closed(), "the execution was dropped");
    }

    #[tokio::test]
    async fn a_subscriber_that_fell_behind_is_told_and_handed_the_latest() {
        let fanout = Fanout::new(2);
        let (results, stream) = execution();
        let mut slow = fanout.lead(key(None), stream, None);
        let (mut fast, _) = fanout.join(&key(None)).unwrap();
        for n in 1..=5 {
            results.send(rendered(n)).unwrap();
            assert_eq!(json(fast.next().await), format!("{{\"data\":{n}}}"));
        }
        match slow.next().await {
            Some(Received::Dropped {
                missed,
                latest: Some(latest),
            }) => {
                assert_eq!(missed, 4);
                assert_eq!(&*latest.json, "{\"data\":5}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn waiting_subscribers_are_woken_by_the_next_result_and_by_the_end() {
        let fanout = Fanout::new(2);
        let (results, stream) = execution();
        let first = fanout.lead(key(None), stream, None);
        let (second, _) = fanout.join(&key(None)).unwrap();
        let waiters: Vec<_> = [first, second]
            .into_iter()
            .map(|mut member| {
                tokio::spawn(async move {
                    let result = json(member.next().await);
                    (result, member.next().await.is_none())
                })
            })
            .collect();
        // Both are waiting before anything is published.
        tokio::task::yield_now().await;
        results.send(rendered(7)).unwrap();
        drop(results);
        for waiter in waiters {
            let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
            let woken = woken.expect("a waiting subscriber was never woken");
            assert_eq!(woken.unwrap(), ("{\"data\":7}".to_string(), true));
        }
    }

    #[test]
    fn a_reader_that_leaves_gives_its_place_to_the_next() {
        let feed = Arc::new(Feed::new(1));
        let first = Reader::of(&feed);
        let second = Reader::of(&feed);
        assert_eq!((first.place, second.place), (0, 1));
        drop(first);
        let third = Reader::of(&feed);
        assert_eq!(third.place, 0);
        assert_eq!(feed.state().waiting.len(), 2);
    }

    #[tokio::test]
    async fn an_execution_that_ends_completes_its_subscribers() {
        let fanout = Fanout::new(2);
        let (results, stream) = execution();
        let mut member = fanout.lead(key(None), stream, None);
        results.send(rendered(1)).unwrap();
        drop(results);
        assert_eq!(json(member.next().await), "{\"data\":1}");
        assert!(member.next().await.is_none());
        assert_eq!(fanout.executions(), 0);
        // A new subscriber of the key starts a new execution.
        let (_results, stream) = execution();
        let _again = fanout.lead(key(None), stream, None);
        assert_eq!(fanout.executions(), 1);
    }
}
