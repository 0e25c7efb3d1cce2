#!/usr/bin/env bash
# clients.sh checks askgate's subscription transports with the reference
# clients (scripts/clients/clients.mjs): graphql-ws's createClient over
# graphql-transport-ws, graphql-sse's createClient in distinct connections
# mode, and subscriptions-transport-ws's SubscriptionClient over the legacy
# graphql-ws subprotocol. Like audit.sh it builds the binary, starts
# `askgate serve` in development mode on a free loopback port with a
# throw-away SQLite database, a fixed JWT secret and the built-in demo LLM
# backend, mints two tokens (the user's, and another user's for the
# NOT_FOUND check), runs the clients and stops the server. It fails when
# any check fails.
#
# Environment:
#   GO                       the go command (go)
#   CLIENTS_START_TIMEOUT    seconds to wait for the server to come up (30)
#   CLIENTS_CHECK_TIMEOUT_MS time limit of one check in ms (15000)
#   CLIENTS_TIMEOUT_MS       time limit of the whole run of clients.mjs in ms (55000)
set -euo pipefail

cd "$(dirname "$0")/.."
name=clients
start_timeout=${CLIENTS_START_TIMEOUT:-30}
clients_dir=$PWD/scripts/clients
# shellcheck source=lib/askgate-node.sh
source scripts/lib/askgate-node.sh

# Node.js 20 or newer (graphql-ws 6 needs it) runs the pinned clients.
require_tools 20
npm_install "$clients_dir"
start_askgate askgate-clients-secret-0123456789abcdefghijklmn
token=$(mint clients)
other_token=$(mint clients-other)

log "running the reference subscription clients against $url"
status=0
ASKGATE_TOKEN=$token ASKGATE_TOKEN_OTHER=$other_token node "$clients_dir/clients.mjs" "$url" || status=$?
if ! server_alive; then
	show_server_log
	die "askgate serve died during the checks"
fi
if ((status != 0)); then
	show_server_log
	log "subscription transports: a reference client check failed (see FAIL above)"
	exit "$status"
fi
