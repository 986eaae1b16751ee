-- The commerce graph's tables (GRAPH.md "Tables"), SQLite flavour.
-- Money is integer cents; timestamps are RFC 3339 text in UTC with milliseconds
-- ("2026-01-31T12:00:00.000Z"), which sorts lexicographically in time order.

CREATE TABLE categories (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE
);

CREATE TABLE products (
    id          INTEGER PRIMARY KEY,
    sku         TEXT    NOT NULL UNIQUE,
    title       TEXT    NOT NULL,
    description TEXT,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    currency    TEXT    NOT NULL DEFAULT 'USD',
    category_id INTEGER NOT NULL REFERENCES categories (id),
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX products_category_id ON products (category_id, id);
CREATE INDEX products_price ON products (price_cents, id);
CREATE INDEX products_title ON products (title, id);
CREATE INDEX products_created_at ON products (created_at, id);

CREATE TABLE product_images (
    id         INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products (id),
    url        TEXT    NOT NULL,
    alt        TEXT,
    position   INTEGER NOT NULL
);
CREATE INDEX product_images_product_id ON product_images (product_id, position);

CREATE TABLE inventory (
    product_id INTEGER NOT NULL REFERENCES products (id),
    warehouse  TEXT    NOT NULL,
    available  INTEGER NOT NULL CHECK (available >= 0),
    PRIMARY KEY (product_id, warehouse)
);

CREATE TABLE customers (
    id       INTEGER PRIMARY KEY,
    name     TEXT    NOT NULL,
    email    TEXT    NOT NULL UNIQUE,
    verified INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1))
);

CREATE TABLE reviews (
    id          INTEGER PRIMARY KEY,
    product_id  INTEGER NOT NULL REFERENCES products (id),
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    rating      INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
    body        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
-- Reviews list newest first per product; the id breaks ties and is the cursor.
CREATE INDEX reviews_product_id ON reviews (product_id, id);
CREATE INDEX reviews_customer_id ON reviews (customer_id);

CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    number          TEXT    NOT NULL UNIQUE,
    customer_id     INTEGER NOT NULL REFERENCES customers (id),
    status          TEXT    NOT NULL
        CHECK (status IN ('PENDING', 'PAID', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    total_cents     INTEGER NOT NULL CHECK (total_cents >= 0),
    currency        TEXT    NOT NULL DEFAULT 'USD',
    idempotency_key TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX orders_customer_id ON orders (customer_id, id);
CREATE INDEX orders_status ON orders (status, id);

CREATE TABLE order_items (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    product_id       INTEGER NOT NULL REFERENCES products (id),
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0)
);
CREATE INDEX order_items_order_id ON order_items (order_id);
CREATE INDEX order_items_product_id ON order_items (product_id);

CREATE TABLE persisted_queries (
    id             TEXT PRIMARY KEY,
    body           TEXT NOT NULL,
    operation_name TEXT,
    operation_type TEXT NOT NULL,
    client_name    TEXT,
    created_at     TEXT NOT NULL
);
