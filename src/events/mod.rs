//! What changed, for the subscriptions that watch it: an [`EventBus`] carries
//! small events (ids only) from the writes that committed them to every
//! subscriber of their topic. Subscribers load the committed state themselves,
//! so an event is never stale data, and a subscriber that missed some events
//! only has to load once to be current again.
//!
//! One interface for one node and many: on SQLite the writer publishes what
//! it committed to the in-process bus ([`LocalBus`]); on PostgreSQL the
//! write's transaction sends the events with NOTIFY (`store::notices`), and
//! every replica's listener publishes them to its own in-process bus, so a
//! subscriber on any replica hears of a write made on any other, and only of
//! writes that committed.

mod local;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;

pub use local::LocalBus;

/// What a subscriber listens to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A product's price or stock changed.
    Product(i64),
    /// A product's stock changed in some warehouse.
    Inventory(i64),
    /// An order's status changed.
    Order(i64),
}

/// Something that changed. Published only after the transaction that made
/// the change committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    ProductUpdated { product_id: i64 },
    InventoryChanged { product_id: i64 },
    OrderStatusChanged { order_id: i64 },
}

impl Event {
    pub fn topic(&self) -> Topic {
        match *self {
            Event::ProductUpdated { product_id } => Topic::Product(product_id),
            Event::InventoryChanged { product_id } => Topic::Inventory(product_id),
            Event::OrderStatusChanged { order_id } => Topic::Order(order_id),
        }
    }
}

/// What a subscriber receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Event(Event),
    /// The subscriber fell behind and this many events of its topic were
    /// dropped for it (the publisher never waits for a slow subscriber).
    Lagged(u64),
}

/// A subscriber's events; dropping it unsubscribes.
pub type EventStream = Pin<Box<dyn Stream<Item = Delivery> + Send>>;

/// Publish and subscribe by topic.
pub trait EventBus: Send + Sync {
    /// Hands `event` to the current subscribers of its topic without waiting
    /// for any of them.
    fn publish(&self, event: Event);

    /// The events of `topic` published from now on.
    fn subscribe(&self, topic: Topic) -> EventStream;
}

/// The bus the server runs with. Cheap to clone.
#[derive(Clone)]
pub struct Events {
    bus: Arc<dyn EventBus>,
    /// Whether committed events come back from the database (PostgreSQL's
    /// NOTIFY, heard by every replica, this one included) rather than from
    /// the writer.
    from_database: bool,
}

impl Events {
    pub fn new(bus: impl EventBus + 'static) -> Events {
        Events {
            bus: Arc::new(bus),
            from_database: false,
        }
    }

    /// The in-process bus, each subscriber buffering at most `buffer` events.
    pub fn local(buffer: usize) -> Events {
        Events::new(LocalBus::new(buffer))
    }

    /// The in-process bus fed by the database's notices: the writer does not
    /// publish its committed events itself (the notice it sent inside its
    /// transaction brings them back, to every replica), and whoever listens
    /// hands them to [`Events::publish`].
    pub fn fed_by_database(buffer: usize) -> Events {
        Events {
            from_database: true,
            ..Events::local(buffer)
        }
    }

    /// A write committed `event`: publish it here unless the database
    /// delivers it.
    pub fn committed(&self, event: Event) {
        if !self.from_database {
            self.publish(event);
        }
    }

    /// Hands `event` to this replica's subscribers of its topic.
    pub fn publish(&self, event: Event) {
        tracing::debug!(?event, "publishing");
        self.bus.publish(event);
    }

    pub fn subscribe(&self, topic: Topic) -> EventStream {
        self.bus.subscribe(topic)
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::local(local::DEFAULT_BUFFER)
    }
}
