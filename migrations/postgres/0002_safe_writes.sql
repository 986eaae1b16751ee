-- Safe writes. `request_hash` fingerprints the lines of a placed order, so a
-- retry with the same idempotency key is recognised and a different order
-- reusing the key is refused. `stock_allocations` records which warehouse
-- each unit came from, so a cancellation puts back exactly what was taken.
ALTER TABLE orders ADD COLUMN request_hash TEXT;

CREATE TABLE stock_allocations (
    order_id   BIGINT NOT NULL REFERENCES orders (id),
    product_id BIGINT NOT NULL REFERENCES products (id),
    warehouse  TEXT   COLLATE "C" NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id, warehouse)
);
