//! The in-process bus: one tokio broadcast channel per topic that has
//! subscribers, created on the first subscription and removed with the last.
//!
//! A broadcast channel never makes its sender wait: each receiver reads the
//! channel's ring at its own pace, and one that falls more than the ring's
//! capacity behind loses the oldest events and is told how many (so the
//! capacity is each subscriber's buffer). A channel per topic means an event
//! wakes only the subscribers of that topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Delivery, Event, EventBus, EventStream, Topic};

/// Events a subscriber may fall behind by before it loses some.
pub(super) const DEFAULT_BUFFER: usize = 16;

#[derive(Clone)]
pub struct LocalBus {
    buffer: usize,
    channels: Arc<Mutex<HashMap<Topic, broadcast::Sender<Event>>>>,
}

impl LocalBus {
    pub fn new(buffer: usize) -> LocalBus {
        LocalBus {
            buffer: buffer.max(1),
            channels: Default::default(),
        }
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<Topic, broadcast::Sender<Event>>> {
        // The map stays consistent even if a holder panicked: every change
        // to it is a single insert or remove.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Topics with a channel (a test's window on the cleanup).
    pub fn open_topics(&self) -> usize {
        self.channels().len()
    }
}

impl EventBus for LocalBus {
    fn publish(&self, event: Event) {
        if let Some(sender) = self.channels().get(&event.topic()) {
            // Fails only when there is no receiver left: nobody to tell.
            let _ = sender.send(event);
        }
    }

    fn subscribe(&self, topic: Topic) -> EventStream {
        let receiver = self
            .channels()
            .entry(topic)
            .or_insert_with(|| broadcast::channel(self.buffer).0)
            .subscribe();
        let subscription = Subscription {
            bus: self.clone(),
            topic,
            receiver: Some(receiver),
        };
        futures::stream::unfold(subscription, |mut subscription| async move {
            let delivery = subscription.next().await?;
            Some((delivery, subscription))
        })
        .boxed()
    }
}

/// One subscriber's receiver; dropping it removes the topic's channel when
/// it was the last.
struct Subscription {
    bus: LocalBus,
    topic: Topic,
    receiver: Option<broadcast::Receiver<Event>>,
}

impl Subscription {
    async fn next(&mut self) -> Option<Delivery> {
        match self.receiver.as_mut()?.recv().await {
            Ok(event) => Some(Delivery::Event(event)),
            Err(RecvError::Lagged(missed)) => Some(Delivery::Lagged(missed)),
            Err(RecvError::Closed) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut channels = self.bus.channels();
        if channels
            .get(&self.topic)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            channels.remove(&self.topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(product_id: i64) -> Event {
        Event::ProductUpdated { product_id }
    }

    #[tokio::test]
    async fn subscribers_get_the_events_of_their_topic_only() {
        let bus = LocalBus::new(4);
        let mut one = bus.subscribe(Topic::Product(1));
        let mut two = bus.subscribe(Topic::Product(2));
        bus.publish(price(1));
        bus.publish(price(2));
        assert_eq!(one.next().await, Some(Delivery::Event(price(1))));
        assert_eq!(two.next().await, Some(Delivery::Event(price(2))));
    }

    #[tokio::test]
    async fn a_slow_subscriber_learns_it_lagged_and_the_publisher_never_waits() {
        let bus = LocalBus::new(2);
        let mut slow = bus.subscribe(Topic::Product(1));
        // Nobody reads while five events go out: publishing returns at once.
        for _ in 0..5 {
            bus.publish(price(1));
        }
        assert_eq!(slow.next().await, Some(Delivery::Lagged(3)));
        assert_eq!(slow.next().await, Some(Delivery::Event(price(1))));
        assert_eq!(slow.next().await, Some(Delivery::Event(price(1))));
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_closes_the_topic() {
        let bus = LocalBus::new(2);
        let one = bus.subscribe(Topic::Order(7));
        let two = bus.subscribe(Topic::Order(7));
        assert_eq!(bus.open_topics(), 1);
        drop(one);
        assert_eq!(bus.open_topics(), 1);
        drop(two);
        assert_eq!(bus.open_topics(), 0);
        // Publishing to a topic nobody watches is a no-op.
        bus.publish(Event::OrderStatusChanged { order_id: 7 });
    }
}
