// Mounts GraphiQL. Queries go to this server's /graphql; headers typed in the
// headers pane (e.g. {"authorization": "Bearer …"}) are sent with them.
// Subscriptions go to the same /graphql over a WebSocket (graphql-ws).
// A separate file rather than an inline script, so the page works under a
// Content-Security-Policy that forbids inline scripts.
//
// The "Persisted documents" plugin lists the documents registered with the
// server (GET /graphiql/persisted-documents): a click opens one in a new tab,
// and "Run by id" sends it as a production client does, {documentId,
// variables} without its text. Plain React.createElement, no build step.
(function () {
  'use strict';

  var h = React.createElement;
  var GraphiQLReact = GraphiQL.React;
  var endpoint = new URL('/graphql', window.location.href).toString();
  var documentsEndpoint = new URL('/graphiql/persisted-documents', window.location.href).toString();
  var CLIENT_HEADER = 'apollographql-client-name';

  // Set by "Run by id" while it starts a run: the document to name by id.
  var runById = null;

  // Subscriptions run over a WebSocket to the same /graphql, in the
  // graphql-transport-ws protocol (the graphql-ws client bundled with
  // GraphiQL). The headers pane becomes the connection_init payload, so
  // {"authorization": "Bearer …"} authenticates the socket as it does a POST.
  var subscriptionEndpoint = endpoint.replace(/^http/, 'ws');
  var subscriptionFetcher = GraphiQL.createFetcher({
    url: endpoint,
    subscriptionUrl: subscriptionEndpoint,
  });

  // The parsed document when the operation GraphiQL runs is a subscription,
  // else null (a document that does not parse is left to the server).
  function subscriptionDocument(params) {
    var document;
    try {
      document = GraphiQL.GraphQL.parse(params.query || '');
    } catch (_) {
      return null;
    }
    var operations = document.definitions.filter(function (d) {
      return d.kind === 'OperationDefinition';
    });
    var operation = params.operationName
      ? operations.find(function (o) {
          return o.name && o.name.value === params.operationName;
        })
      : operations[0];
    return operation && operation.operation === 'subscription' ? document : null;
  }

  function fetcher(params, options) {
    // Subscriptions always run by their text: over a socket there is no
    // client-name header to scope a registered document by.
    var subscription = runById ? null : subscriptionDocument(params);
    if (subscription) {
      // The toolkit's fetcher takes the socket only when it is handed the
      // document, which GraphiQL does not always do.
      return subscriptionFetcher(params, Object.assign({}, options, { documentAST: subscription }));
    }
    var headers = Object.assign(
      {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
      },
      (options && options.headers) || {}
    );
    var body = params;
    var byId = runById;
    if (byId) {
      // The id names the registered document: running an edited one by that
      // id would show the result of something else than the editor holds.
      // Formatting (the prettify button) is not an edit.
      if (!sameDocument(params.query, byId.body)) {
        return Promise.resolve({
          errors: [
            {
              message:
                'The editor no longer holds the registered text of ' + documentLabel(byId) +
                ', so it cannot run by id. Open it again from Persisted documents, ' +
                'or run the edited text with the run button.',
            },
          ],
        });
      }
      body = { documentId: byId.id, variables: params.variables || {} };
      if (byId.client) headers[CLIENT_HEADER] = byId.client;
    }
    return fetch(endpoint, {
      method: 'POST',
      headers: headers,
      body: JSON.stringify(body),
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

  // Documents compared as GraphQL, not as text: whitespace, commas and
  // comments aside. The printed form of each text is kept, as the panel
  // compares on every render.
  var printed = new Map();
  function normalized(text) {
    if (!printed.has(text)) {
      var form;
      try {
        form = GraphiQL.GraphQL.print(GraphiQL.GraphQL.parse(text));
      } catch (_) {
        form = text.trim();
      }
      if (printed.size > 200) printed.clear();
      printed.set(text, form);
    }
    return printed.get(text);
  }

  function sameDocument(a, b) {
    return typeof a === 'string' && typeof b === 'string' && normalized(a) === normalized(b);
  }

  function documentLabel(document) {
    return document.name || document.id;
  }

  function documentKey(document) {
    return (document.client || '') + '\n' + document.id;
  }

  // A variables object with every variable of the operation set to null,
  // for the user to fill in; empty when it takes none.
  function variablesTemplate(body) {
    var variables = {};
    try {
      GraphiQL.GraphQL.parse(body).definitions.forEach(function (definition) {
        (definition.variableDefinitions || []).forEach(function (variable) {
          variables[variable.variable.name.value] = null;
        });
      });
    } catch (_) {
      return '';
    }
    return Object.keys(variables).length ? JSON.stringify(variables, null, 2) : '';
  }

  // Which document each tab was opened from (by tab id), so "Run by id"
  // knows what to name even when two clients registered the same text.
  var openedFrom = new Map();

  function PersistedDocumentsIcon() {
    return h(
      'svg',
      {
        viewBox: '0 0 24 24',
        fill: 'none',
        stroke: 'currentColor',
        strokeWidth: 1.5,
        strokeLinecap: 'round',
        strokeLinejoin: 'round',
        'aria-hidden': 'true',
      },
      h('path', { d: 'M6 3h9l4 4v14H6z' }),
      h('path', { d: 'M15 3v4h4' }),
      h('path', { d: 'M9 11h7M9 14h7M9 17h4' })
    );
  }

  var styles = {
    header: { fontSize: 'var(--font-size-h3)' },
    filter: {
      width: '100%',
      boxSizing: 'border-box',
      margin: 'var(--px-16) 0 var(--px-8)',
      padding: 'var(--px-8) var(--px-12)',
      border: 'none',
      borderRadius: 'var(--border-radius-4)',
      background: 'hsla(var(--color-neutral), var(--alpha-background-light))',
      color: 'hsl(var(--color-neutral))',
      font: 'inherit',
    },
    list: { listStyle: 'none', margin: 0, padding: 0 },
    item: { marginTop: 'var(--px-4)', borderRadius: 'var(--border-radius-4)' },
    active: { background: 'hsla(var(--color-primary), var(--alpha-background-light))' },
    open: {
      display: 'block',
      width: '100%',
      textAlign: 'left',
      padding: 'var(--px-8) var(--px-10)',
      borderRadius: 'var(--border-radius-4)',
    },
    name: { fontFamily: 'var(--font-family-mono)', fontSize: 'var(--font-size-inline-code)' },
    meta: {
      color: 'hsla(var(--color-neutral), var(--alpha-secondary))',
      fontSize: 'var(--font-size-hint)',
      marginTop: 'var(--px-4)',
    },
    run: { margin: '0 var(--px-10) var(--px-8)' },
    note: {
      color: 'hsla(var(--color-neutral), var(--alpha-secondary))',
      fontSize: 'var(--font-size-hint)',
      marginTop: 'var(--px-16)',
    },
  };

  function describe(document) {
    return [
      document.type,
      document.client ? 'client ' + document.client : 'all clients',
      'cost ' + document.cost,
    ].join(' · ');
  }

  function PersistedDocuments() {
    var editor = GraphiQLReact.useEditorContext({ nonNull: true });
    var execution = GraphiQLReact.useExecutionContext({ nonNull: true });
    var listState = React.useState({ loading: true, documents: [], error: null });
    var list = listState[0];
    var setList = listState[1];
    var filterState = React.useState('');
    var filter = filterState[0];
    var setFilter = filterState[1];
    // The document "open" asked for, applied once its new tab is showing.
    var pending = React.useRef(null);

    var refresh = React.useCallback(function () {
      setList(function (previous) {
        return { loading: true, documents: previous.documents, error: null };
      });
      fetch(documentsEndpoint, { credentials: 'same-origin', cache: 'no-store' })
        .then(function (response) {
          if (!response.ok) throw new Error('HTTP ' + response.status + ' ' + response.statusText);
          return response.json();
        })
        .then(function (body) {
          setList({ loading: false, documents: body.documents, error: null });
        })
        .catch(function (error) {
          setList({ loading: false, documents: [], error: String(error.message || error) });
        });
    }, []);
    React.useEffect(refresh, [refresh]);

    var activeTab = editor.tabs[editor.activeTabIndex];
    React.useEffect(
      function () {
        var wanted = pending.current;
        if (!wanted || editor.activeTabIndex !== wanted.tabIndex || !activeTab) return;
        pending.current = null;
        openedFrom.set(activeTab.id, documentKey(wanted.document));
        if (editor.queryEditor) editor.queryEditor.setValue(wanted.document.body);
        if (editor.variableEditor) editor.variableEditor.setValue(variablesTemplate(wanted.document.body));
        if (editor.headerEditor && wanted.document.client) {
          var headers = {};
          headers[CLIENT_HEADER] = wanted.document.client;
          editor.headerEditor.setValue(JSON.stringify(headers, null, 2));
        }
      },
      [editor.activeTabIndex, activeTab, editor.queryEditor, editor.variableEditor, editor.headerEditor]
    );

    function open(document) {
      pending.current = { document: document, tabIndex: editor.tabs.length };
      editor.addTab();
    }

    function runByIdInActiveTab(document) {
      // GraphiQL's run calls the fetcher before its first await, so the flag
      // is cleared at once: a run that stops early (invalid variables JSON)
      // must not leave the next plain run going by id.
      runById = document;
      try {
        execution.run();
      } finally {
        runById = null;
      }
    }

    // The document the active tab shows: the one it was opened from, or
    // else the only one with exactly its text.
    var activeKey = activeTab && openedFrom.get(activeTab.id);
    var openedDocument = list.documents.find(function (document) {
      return documentKey(document) === activeKey;
    });
    var activeDocument =
      openedDocument && sameDocument(activeTab.query, openedDocument.body) ? openedDocument : undefined;
    if (!activeDocument && activeTab && activeTab.query) {
      var same = list.documents.filter(function (document) {
        return sameDocument(activeTab.query, document.body);
      });
      if (same.length === 1) activeDocument = same[0];
    }

    var needle = filter.trim().toLowerCase();
    var shown = list.documents.filter(function (document) {
      if (!needle) return true;
      return [document.name, document.id, document.type, document.client, document.body]
        .join(' ')
        .toLowerCase()
        .indexOf(needle) !== -1;
    });

    var items = shown.map(function (document) {
      var active = activeDocument === document;
      return h(
        'li',
        {
          key: documentKey(document),
          className: 'persisted-document' + (active ? ' active' : ''),
          style: Object.assign({}, styles.item, active ? styles.active : null),
        },
        h(
          GraphiQLReact.UnStyledButton,
          {
            type: 'button',
            style: styles.open,
            title: 'Open in a new tab: ' + document.id,
            onClick: function () {
              open(document);
            },
          },
          h('div', { style: styles.name }, documentLabel(document)),
          h('div', { style: styles.meta }, describe(document))
        ),
        active &&
          h(
            GraphiQLReact.Button,
            {
              type: 'button',
              className: 'persisted-document-run',
              style: styles.run,
              disabled: execution.isFetching,
              title: 'POST {"documentId", "variables"}, as a production client sends it',
              onClick: function () {
                runByIdInActiveTab(document);
              },
            },
            'Run by id'
          ),
        !active &&
          openedDocument === document &&
          h(
            'div',
            { className: 'persisted-document-edited', style: Object.assign({}, styles.meta, styles.run) },
            'Edited in this tab: open it again to run it by id.'
          )
      );
    });

    var status = null;
    if (list.error) {
      status = 'The registered documents could not be read: ' + list.error;
    } else if (list.loading && !list.documents.length) {
      status = 'Loading…';
    } else if (!list.documents.length) {
      status =
        'No documents are registered. Operators register manifests with ' +
        'POST /admin/persisted-queries or commerce-graph persisted import.';
    } else if (!shown.length) {
      status = 'No registered document matches “' + filter + '”.';
    }

    return h(
      'section',
      { className: 'persisted-documents', 'aria-label': 'Persisted documents' },
      h(
        'div',
        { className: 'graphiql-history-header', style: styles.header },
        'Persisted documents',
        h(
          GraphiQLReact.Tooltip,
          { label: 'Refresh the list' },
          h(
            GraphiQLReact.UnStyledButton,
            {
              type: 'button',
              className: 'persisted-documents-refresh',
              'aria-label': 'Refresh the list',
              onClick: refresh,
            },
            h(GraphiQLReact.ReloadIcon, { 'aria-hidden': 'true' })
          )
        )
      ),
      h('input', {
        type: 'search',
        className: 'persisted-documents-filter',
        placeholder: 'Filter by name, client, text…',
        'aria-label': 'Filter the documents',
        value: filter,
        style: styles.filter,
        onChange: function (event) {
          setFilter(event.target.value);
        },
      }),
      h('ul', { style: styles.list }, items),
      status && h('p', { className: 'persisted-documents-status', style: styles.note }, status),
      list.documents.length > 0 &&
        h(
          'p',
          { style: styles.note },
          'These are the documents the server has registered: the ones production ' +
            'runs in safelist mode. Open one, fill in its variables, then Run by id.'
        )
    );
  }

  var persistedDocumentsPlugin = {
    title: 'Persisted documents',
    icon: PersistedDocumentsIcon,
    content: PersistedDocuments,
  };

  var defaultQuery = [
    '# Welcome to commerce-graph. Press the run button (or Ctrl-Enter).',
    '# Personal data (me, order, orders) needs a token:',
    '#   commerce-graph token --customer 42',
    '# then put {"authorization": "Bearer <token>"} in the headers pane.',
    '# The registered documents are in the Persisted documents plugin.',
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
      plugins: [persistedDocumentsPlugin],
    })
  );
})();
