// Mounts GraphiQL. Queries go to this server's /graphql; headers typed in the
// headers pane (e.g. {"authorization": "Bearer …"}) are sent with them.
// A separate file rather than an inline script, so the page works under a
// Content-Security-Policy that forbids inline scripts.
(function () {
  'use strict';

  var endpoint = new URL('/graphql', window.location.href).toString();

  function fetcher(params, options) {
    var headers = Object.assign(
      {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
      },
      (options && options.headers) || {}
    );
    return fetch(endpoint, {
      method: 'POST',
      headers: headers,
      body: JSON.stringify(params),
      credentials: 'same-origin',
    }).then(function (response) {
      // Errors the GraphQL layer never saw (a proxy's 502, a 413 for a too
      // large body) may not be JSON: show their status and text in the
      // result pane instead of a bare JSON parse error.
      return response.text().then(function (text) {
        try {
          return JSON.parse(text);
        } catch (_) {
          return {
            errors: [
              { message: 'HTTP ' + response.status + ' ' + response.statusText + ': ' + text },
            ],
          };
        }
      });
    });
  }

  var defaultQuery = [
    '# Welcome to commerce-graph. Press the run button (or Ctrl-Enter).',
    '# Personal data (me, order, orders) needs a token:',
    '#   commerce-graph token --customer 42',
    '# then put {"authorization": "Bearer <token>"} in the headers pane.',
    '',
    '{',
    '  products(first: 5) {',
    '    nodes {',
    '      id',
    '      title',
    '      price { amount currency }',
    '      averageRating',
    '    }',
    '    pageInfo { endCursor hasNextPage }',
    '  }',
    '}',
    '',
  ].join('\n');

  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: false,
    })
  );
})();
