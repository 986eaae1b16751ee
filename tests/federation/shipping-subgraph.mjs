// A second team's subgraph: shipping. It extends commerce-graph's Product by
// its key with `shippingEstimate`, and its shipments reference commerce-graph's
// Customer and Order entities, which the gateway resolves through
// commerce-graph's `_entities`.

import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { parse } from 'graphql';

export const typeDefs = parse(`
  extend schema
    @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key", "@shareable"])

  type Product @key(fields: "id") {
    id: ID!
    "Days until delivery, by product."
    shippingEstimate: ShippingEstimate!
  }

  type ShippingEstimate {
    days: Int!
    carrier: String!
  }

  type Customer @key(fields: "id", resolvable: false) {
    id: ID!
  }

  type Order @key(fields: "id", resolvable: false) {
    id: ID!
  }

  type Shipment {
    id: ID!
    customer: Customer!
    order: Order!
    product: Product!
  }

  type Query {
    shipment(id: ID!): Shipment
  }
`);

/** Deterministic, so the tests can compute what the gateway must return. */
export function estimateFor(productId) {
  const n = Number(productId);
  return { days: 1 + (n % 5), carrier: n % 2 === 0 ? 'PostNord' : 'DHL' };
}

export async function startShippingSubgraph({ shipments }) {
  const resolvers = {
    Product: {
      __resolveReference: (ref) => ({ id: ref.id }),
      shippingEstimate: (product) => estimateFor(product.id),
    },
    Shipment: {
      customer: (s) => ({ id: s.customerId }),
      order: (s) => ({ id: s.orderId }),
      product: (s) => ({ id: s.productId }),
    },
    Query: {
      shipment: (_, { id }) => shipments.find((s) => s.id === id) ?? null,
    },
  };
  const server = new ApolloServer({ schema: buildSubgraphSchema({ typeDefs, resolvers }) });
  const { url } = await startStandaloneServer(server, { listen: { host: '127.0.0.1', port: 0 } });
  return { url, stop: () => server.stop() };
}
