//! Notices: what a committed write tells every replica. Each write collects
//! the events it caused (for subscriptions) and the cache tags it changed
//! (for response caches); on PostgreSQL they go out with `pg_notify` inside
//! the write's own transaction, so a notice is delivered if and only if the
//! write committed, and every replica's [`listen`] receives it (the writer's
//! own included). A change of the persisted-document registry is a notice
//! too. On SQLite (one process) there is nothing to send: the caller takes
//! the committed events from the handle and publishes them in process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{Any, Transaction};

use super::{Backend, Sql, Store, StoreError};
use crate::events::Event;

/// The channel every replica listens on.
pub const CHANNEL: &str = "commerce_graph";

/// Items per notification: a payload must stay under PostgreSQL's 8,000
/// bytes, and an item is at most a few dozen bytes.
const ITEMS_PER_NOTIFICATION: usize = 100;

/// What one notification carries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Events, as `product:{id}`, `inventory:{id}`, `order:{id}`.
    #[serde(default, rename = "e", skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Cache tags to purge.
    #[serde(default, rename = "p", skip_serializing_if = "Vec::is_empty")]
    pub purge: Vec<String>,
    /// The persisted-document registry changed.
    #[serde(default, rename = "r", skip_serializing_if = "std::ops::Not::not")]
    pub registry: bool,
}

impl Notice {
    /// The events, read back (unknown items are skipped: a newer replica
    /// may send kinds this one does not know).
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.events.iter().filter_map(|item| decode_event(item))
    }

    /// Splits into notifications small enough for `pg_notify`.
    fn chunks(&self) -> Vec<Notice> {
        let mut out = Vec::new();
        let mut events = self.events.chunks(ITEMS_PER_NOTIFICATION);
        let mut purge = self.purge.chunks(ITEMS_PER_NOTIFICATION);
        loop {
            let (e, p) = (events.next(), purge.next());
            if e.is_none() && p.is_none() {
                break;
            }
            out.push(Notice {
                events: e.map(<[String]>::to_vec).unwrap_or_default(),
                purge: p.map(<[String]>::to_vec).unwrap_or_default(),
                registry: self.registry && out.is_empty(),
            });
        }
        if out.is_empty() && self.registry {
            out.push(self.clone());
        }
        out
    }
}

pub fn encode_event(event: &Event) -> String {
    match *event {
        Event::ProductUpdated { product_id } => format!("product:{product_id}"),
        Event::InventoryChanged { product_id } => format!("inventory:{product_id}"),
        Event::OrderStatusChanged { order_id } => format!("order:{order_id}"),
    }
}

pub fn decode_event(item: &str) -> Option<Event> {
    let (kind, id) = item.split_once(':')?;
    let id: i64 = id.parse().ok()?;
    match kind {
        "product" => Some(Event::ProductUpdated { product_id: id }),
        "inventory" => Some(Event::InventoryChanged { product_id: id }),
        "order" => Some(Event::OrderStatusChanged { order_id: id }),
        _ => None,
    }
}

/// The events a handle's writes committed, until taken.
#[derive(Clone, Default)]
pub struct CommittedEvents(Arc<Mutex<Vec<Event>>>);

impl CommittedEvents {
    pub(super) fn extend(&self, events: &[Event]) {
        self.lock().extend_from_slice(events);
    }

    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A product's stock changed: its inventory and the product itself ("price
/// or stock") are news.
pub(super) fn stock_changed(product_id: i64) -> [Event; 2] {
    [
        Event::InventoryChanged { product_id },
        Event::ProductUpdated { product_id },
    ]
}

impl Store {
    /// Sends, inside `tx`, the notice of a write that caused `events` and
    /// changed what this handle's tags say it wrote (PostgreSQL; nothing on
    /// SQLite). Call it last before `commit`.
    pub(super) async fn notify(
        &self,
        tx: &mut Transaction<'static, Any>,
        events: &[Event],
        registry: bool,
    ) -> Result<(), StoreError> {
        for payload in self.notice_payloads(events, registry)? {
            let mut sql = Sql::new("SELECT pg_notify(");
            let channel = sql.bind(CHANNEL.to_string());
            let payload = sql.bind(payload);
            sql.push(&format!("{channel}, {payload})"));
            self.count_statement();
            let (text, args) = sql.finish();
            sqlx::query_with(&text, args).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The payloads on [`CHANNEL`] that tell other replicas of `events`,
    /// of the cache tags written so far and, if `registry`, of a change to
    /// the persisted queries; none on SQLite, which has no other replicas.
    pub(super) fn notice_payloads(
        &self,
        events: &[Event],
        registry: bool,
    ) -> Result<Vec<String>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(Vec::new());
        }
        let notice = Notice {
            events: events.iter().map(encode_event).collect(),
            purge: self.tags.tags_written(),
            registry,
        };
        notice
            .chunks()
            .iter()
            .map(|chunk| {
                serde_json::to_string(chunk)
                    .map_err(|e| StoreError::Config(format!("encoding a notice: {e}")))
            })
            .collect()
    }

    /// Records events whose transaction committed, for the caller to take.
    pub(super) fn committed(&self, events: &[Event]) {
        self.committed.extend(events);
    }

    /// The events this handle's writes committed since the last call.
    pub fn take_committed_events(&self) -> Vec<Event> {
        self.committed.take()
    }
}

/// What a listener hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    Notice(Notice),
    /// The connection was lost: notices sent from now on are missed until
    /// [`Heard::Listening`].
    Lost,
    /// After [`Heard::Lost`], a new connection listens again.
    Listening,
}

/// How long one attempt to listen again may take (the listener's own pool
/// would retry a refused connection for 30 s).
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause between attempts.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Listens to every replica's notices on the PostgreSQL database `url`. The
/// returned stream says when its connection is lost and when a new one
/// listens again (retried every second or two for as long as it takes);
/// it never ends.
pub async fn listen(url: &str) -> Result<impl Stream<Item = Heard> + Send, StoreError> {
    let listener = subscribe(url).await?;
    Ok(futures::stream::unfold(
        (Some(listener), url.to_string()),
        |(listener, url)| async move {
            let Some(mut listener) = listener else {
                loop {
                    match tokio::time::timeout(RECONNECT_TIMEOUT, subscribe(&url)).await {
                        Ok(Ok(listener)) => return Some((Heard::Listening, (Some(listener), url))),
                        Ok(Err(error)) => tracing::debug!(%error, "listening again failed"),
                        Err(_) => tracing::debug!("listening again took too long"),
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
            };
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        match serde_json::from_str::<Notice>(notification.payload()) {
                            Ok(notice) => {
                                return Some((Heard::Notice(notice), (Some(listener), url)))
                            }
                            Err(error) => {
                                tracing::warn!(%error, "an unreadable notice, ignored");
                            }
                        }
                    }
                    // The listener is dropped whatever broke: a new one
                    // starts from a clean connection.
                    Ok(None) => return Some((Heard::Lost, (None, url))),
                    Err(error) => {
                        tracing::warn!(%error, "listening for notices failed");
                        return Some((Heard::Lost, (None, url)));
                    }
                }
            }
        },
    ))
}

/// A connection that listens on [`CHANNEL`]. It does not reconnect by
/// itself ([`listen`] makes a new one), so that the moment it listens again
/// is known.
async fn subscribe(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_written_and_unknown_items_are_skipped() {
        let events = [
            Event::ProductUpdated { product_id: 9 },
            Event::InventoryChanged { product_id: 9 },
            Event::OrderStatusChanged { order_id: 17 },
        ];
        let notice = Notice {
            events: events
                .iter()
                .map(encode_event)
                .chain(["refund:3".to_string(), "order:x".to_string()])
                .collect(),
            ..Default::default()
        };
        assert_eq!(notice.events().collect::<Vec<_>>(), events);
        let json = serde_json::to_string(&notice).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(&json).unwrap(), notice);
        assert_eq!(
            serde_json::from_str::<Notice>(r#"{"r":true}"#).unwrap(),
            Notice {
                registry: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn large_notices_are_split_under_the_payload_limit() {
        let notice = Notice {
            events: (0..250).map(|i| format!("inventory:{i}")).collect(),
            purge: (0..120).map(|i| format!("inventory:{i}")).collect(),
            registry: true,
        };
        let chunks = notice.chunks();
        assert_eq!(chunks.len(), 3);
        assert!(chunks
            .iter()
            .all(|c| serde_json::to_string(c).unwrap().len() < 8_000));
        assert_eq!(chunks.iter().map(|c| c.events.len()).sum::<usize>(), 250);
        assert_eq!(chunks.iter().map(|c| c.purge.len()).sum::<usize>(), 120);
        assert_eq!(chunks.iter().filter(|c| c.registry).count(), 1);
        let registry_only = Notice {
            registry: true,
            ..Default::default()
        };
        assert_eq!(registry_only.chunks(), vec![registry_only.clone()]);
    }
}
