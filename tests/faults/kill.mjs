// No lost writes (issue 8, point 5): `placeOrder` load from many customers
// at once against a release replica on PostgreSQL, the replica SIGKILLed in
// the middle of it, then the database checked: every acknowledged order is
// there with all its items, no order is half-written, each product's stock
// is its initial stock minus what committed orders took, and retrying with
// the same idempotency key after the crash never takes stock twice.
//
// Two phases, with the replica restarted in between (.ci/kill.sh):
//   node kill.mjs load   COMMERCE_GRAPH_URL, COMMERCE_GRAPH_KILL_PID
//   node kill.mjs check  COMMERCE_GRAPH_URL (the restarted replica)
// Both: COMMERCE_GRAPH_BIN (to mint tokens), COMMERCE_GRAPH_DATABASE_URL and
// PSQL (to read the database directly), KILL_STATE (a JSON file the load
// phase writes for the check phase).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const CLIENTS = 32;
const PRODUCTS = [1, 2, 3, 4, 5, 6, 7, 8];
const LOAD_MS = 2_500;
const env = (name) => {
  assert.ok(process.env[name], `${name} is set`);
  return process.env[name];
};

const PLACE_ORDER = `mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) { order { id items { product { id } quantity } } }
}`;

/// One column of one row per line, from the database itself.
function sql(statement) {
  const out = execFileSync(env('PSQL'), [env('COMMERCE_GRAPH_DATABASE_URL'), '-At', '-F', '\t', '-c', statement], {
    encoding: 'utf8',
  });
  return out.trim() === '' ? [] : out.trim().split('\n').map((line) => line.split('\t'));
}

const stock = () =>
  Object.fromEntries(
    sql(`SELECT product_id, SUM(available) FROM inventory WHERE product_id IN (${PRODUCTS}) GROUP BY product_id`)
      .map(([id, available]) => [id, Number(available)]),
  );

const token = (customer) =>
  execFileSync(env('COMMERCE_GRAPH_BIN'), ['token', '--customer', String(customer)], { encoding: 'utf8' }).trim();

/// Lines as `product:quantity`, sorted: how two orders' items compare.
const canonical = (items) => items.map(({ productId, quantity }) => `${productId}:${quantity}`).sort().join(',');

async function placeOrder(base, bearer, idempotencyKey, items) {
  const response = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ query: PLACE_ORDER, variables: { input: { idempotencyKey, items } } }),
  });
  return response.json();
}

function randomItems() {
  const products = [...PRODUCTS].sort(() => Math.random() - 0.5).slice(0, 1 + Math.floor(Math.random() * 3));
  return products.map((id) => ({ productId: String(id), quantity: 1 + Math.floor(Math.random() * 3) }));
}

async function load() {
  const base = env('COMMERCE_GRAPH_URL');
  const run = Date.now();
  const state = {
    baseline: Number(sql('SELECT COALESCE(MAX(id), 0) FROM orders')[0][0]),
    initialStock: stock(),
    attempts: [],
  };
  const tokens = Array.from({ length: CLIENTS }, (_, i) => token(i + 1));
  let killed = false;
  const worker = async (client) => {
    for (let n = 0; !killed; n++) {
      const attempt = { customer: client + 1, key: `kill-${run}-${client}-${n}`, items: randomItems(), outcome: 'in flight' };
      state.attempts.push(attempt);
      try {
        const body = await placeOrder(base, tokens[client], attempt.key, attempt.items);
        const order = body.data?.placeOrder?.order;
        if (order) {
          attempt.outcome = 'acknowledged';
          attempt.orderId = order.id;
          assert.equal(
            canonical(order.items.map((i) => ({ productId: i.product.id, quantity: i.quantity }))),
            canonical(attempt.items),
          );
        } else {
          attempt.outcome = `refused ${body.errors?.[0]?.extensions?.code}`;
        }
      } catch {
        // The connection broke (killed mid-request) or was refused (killed
        // before it): the client cannot know whether the order committed.
        attempt.outcome = 'unknown';
      }
    }
  };
  const workers = Array.from({ length: CLIENTS }, (_, i) => worker(i));
  await new Promise((resolve) => setTimeout(resolve, LOAD_MS));
  process.kill(Number(env('COMMERCE_GRAPH_KILL_PID')), 'SIGKILL');
  killed = true;
  await Promise.all(workers);
  writeFileSync(env('KILL_STATE'), JSON.stringify(state));
  const count = (outcome) => state.attempts.filter((a) => a.outcome === outcome).length;
  console.log(
    `load: ${state.attempts.length} attempts by ${CLIENTS} customers in ${LOAD_MS} ms, then SIGKILL: ` +
      `${count('acknowledged')} acknowledged, ${count('unknown')} killed in flight, ` +
      `${state.attempts.length - count('acknowledged') - count('unknown')} refused`,
  );
  assert.ok(count('acknowledged') >= 50, 'the load placed orders before the kill');
}

/// The invariants, read from the database: returns the orders placed since the baseline.
function checkInvariants(state, acknowledged) {
  const orders = new Map();
  for (const [id, customer, key, productId, quantity] of sql(
    `SELECT o.id, o.customer_id, o.idempotency_key, i.product_id, i.quantity FROM orders o
       JOIN order_items i ON i.order_id = o.id WHERE o.id > ${state.baseline}`,
  )) {
    const order = orders.get(id) ?? { customer: Number(customer), key, items: [] };
    order.items.push({ productId, quantity: Number(quantity) });
    orders.set(id, order);
  }
  for (const attempt of acknowledged) {
    const order = orders.get(attempt.orderId);
    assert.ok(order, `acknowledged order ${attempt.orderId} is in the database`);
    assert.equal(order.key, attempt.key);
    assert.equal(canonical(order.items), canonical(attempt.items), `order ${attempt.orderId}'s items`);
  }
  const [[withoutItems, unnumbered, wrongTotal, unallocated, duplicateKeys]] = sql(`SELECT
      (SELECT COUNT(*) FROM orders o WHERE o.id > ${state.baseline}
         AND NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)),
      (SELECT COUNT(*) FROM orders WHERE id > ${state.baseline} AND number NOT LIKE 'CG-%'),
      (SELECT COUNT(*) FROM orders o WHERE o.id > ${state.baseline} AND o.total_cents <>
         (SELECT SUM(i.quantity * i.unit_price_cents) FROM order_items i WHERE i.order_id = o.id)),
      (SELECT COUNT(*) FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.id > ${state.baseline}
         AND i.quantity <> (SELECT COALESCE(SUM(s.quantity), 0) FROM stock_allocations s
                             WHERE s.order_id = i.order_id AND s.product_id = i.product_id)),
      (SELECT COUNT(*) FROM (SELECT 1 FROM orders WHERE id > ${state.baseline}
                             GROUP BY customer_id, idempotency_key HAVING COUNT(*) > 1) AS d)`);
  assert.equal(Number(withoutItems), 0, 'orders without items');
  assert.equal(Number(unnumbered), 0, 'orders left half-written (no number)');
  assert.equal(Number(wrongTotal), 0, "orders whose total is not their items'");
  assert.equal(Number(unallocated), 0, 'items whose stock was not taken exactly');
  assert.equal(Number(duplicateKeys), 0, 'idempotency keys with two orders');
  const sold = {};
  for (const order of orders.values()) {
    for (const { productId, quantity } of order.items) sold[productId] = (sold[productId] ?? 0) + quantity;
  }
  const now = stock();
  for (const id of PRODUCTS) {
    assert.equal(now[id], state.initialStock[id] - (sold[id] ?? 0), `product ${id}: stock = initial − sold`);
  }
  return orders;
}

async function check() {
  const base = env('COMMERCE_GRAPH_URL');
  const state = JSON.parse(readFileSync(env('KILL_STATE'), 'utf8'));
  const acknowledged = state.attempts.filter((a) => a.outcome === 'acknowledged');
  const unknown = state.attempts.filter((a) => a.outcome === 'unknown');
  const orders = checkInvariants(state, acknowledged);
  const byKey = new Map([...orders].map(([id, order]) => [order.key, id]));
  const committedUnacknowledged = unknown.filter((a) => byKey.has(a.key)).length;
  console.log(
    `after the crash: ${orders.size} orders in the database = ${acknowledged.length} acknowledged + ` +
      `${committedUnacknowledged} of the ${unknown.length} killed in flight (committed, answer lost); ` +
      'every acknowledged order whole, stock = initial − sold',
  );
  assert.equal(orders.size, acknowledged.length + committedUnacknowledged);

  // Retries with the same keys: the acknowledged and the committed ones
  // answer their order again, the others are placed now, once.
  const tokens = new Map();
  const retried = [...unknown, ...acknowledged.slice(0, 20)];
  let replayed = 0;
  for (const attempt of retried) {
    if (!tokens.has(attempt.customer)) tokens.set(attempt.customer, token(attempt.customer));
    const body = await placeOrder(base, tokens.get(attempt.customer), attempt.key, attempt.items);
    const id = body.data?.placeOrder?.order?.id;
    assert.ok(id, JSON.stringify(body.errors));
    const earlier = attempt.orderId ?? byKey.get(attempt.key);
    if (earlier) {
      assert.equal(id, earlier, `a retry of ${attempt.key} answers its order`);
      replayed += 1;
    }
    attempt.outcome = 'acknowledged';
    attempt.orderId = id;
  }
  const after = checkInvariants(state, [...acknowledged, ...unknown]);
  console.log(
    `retried ${retried.length} keys after the restart: ${replayed} answered the order they had placed, ` +
      `${retried.length - replayed} placed now; ${after.size} orders, none twice, stock = initial − sold`,
  );
}

const phase = process.argv[2];
if (phase === 'load') await load();
else if (phase === 'check') await check();
else throw new Error('usage: node kill.mjs load|check');
