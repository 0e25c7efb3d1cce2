// askgate's GraphiQL page: reads the configuration the server wrote into the
// page and starts GraphiQL (the embedded UMD build, which defines the global
// GraphiQL next to React and ReactDOM).
(function () {
  'use strict';

  var config = JSON.parse(document.getElementById('graphiql-config').textContent);

  // The endpoint is a path on this origin or an absolute URL. Subscriptions
  // speak graphql-transport-ws at the same URL.
  var url = new URL(config.endpoint, window.location.href);
  var subscriptionUrl = new URL(url.href);
  subscriptionUrl.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';

  var tokenHeader = config.token ? 'Bearer ' + config.token : '';

  var send = GraphiQL.createFetcher({
    url: url.href,
    subscriptionUrl: subscriptionUrl.href,
  });

  // requestHeaders turns the headers editor's object into the headers to
  // send. Names are lowercased: HTTP does not mind, and for subscriptions
  // GraphiQL sends these headers as the connection_init payload, where askgate
  // reads "authorization". GraphiQL does not keep the headers editor across
  // reloads (so that tokens stay out of localStorage), so when the editor has
  // no Authorization header the page's token is used; write
  // {"Authorization": ""} to send none.
  function requestHeaders(headers) {
    var out = {};
    var hasAuthorization = false;
    Object.keys(headers || {}).forEach(function (name) {
      var lower = name.toLowerCase();
      if (lower === 'authorization') {
        hasAuthorization = true;
      }
      out[lower] = headers[name];
    });
    if (!hasAuthorization && tokenHeader) {
      out.authorization = tokenHeader;
    }
    if (out.authorization === '') {
      delete out.authorization;
    }
    return out;
  }

  function fetcher(params, opts) {
    return send(params, Object.assign({}, opts, { headers: requestHeaders(opts && opts.headers) }));
  }

  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: config.query,
      defaultHeaders: tokenHeader
        ? JSON.stringify({ Authorization: tokenHeader }, null, 2)
        : undefined,
      defaultEditorToolsVisibility: tokenHeader ? 'headers' : false,
      shouldPersistHeaders: false,
    })
  );
})();
