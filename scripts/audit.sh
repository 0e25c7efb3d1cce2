#!/usr/bin/env bash
# audit.sh runs the graphql-http package's GraphQL over HTTP server audits
# (scripts/audit/audit.mjs) against a real askgate: it builds the binary,
# starts `askgate serve` in development mode on a free loopback port with a
# throw-away SQLite database and a fixed JWT secret, mints a token, runs the
# audits with it and stops the server. It fails when any MUST audit fails;
# SHOULD and MAY audits that do not hold are printed as WARN.
#
# Environment:
#   GO                 the go command (go)
#   AUDIT_START_TIMEOUT  seconds to wait for the server to come up (30)
#   AUDIT_TIMEOUT_MS     time limit of one audit request in ms (10000)
set -euo pipefail

cd "$(dirname "$0")/.."
name=audit
start_timeout=${AUDIT_START_TIMEOUT:-30}
audit_dir=$PWD/scripts/audit
# shellcheck source=lib/askgate-node.sh
source scripts/lib/askgate-node.sh

# Node.js 18 or newer (for the global fetch) runs the pinned audit suite.
require_tools 18
npm_install "$audit_dir"
start_askgate askgate-audit-secret-0123456789abcdefghijklmnop
token=$(mint audit)

log "auditing $url"
status=0
ASKGATE_TOKEN=$token node "$audit_dir/audit.mjs" "$url" || status=$?
if ! server_alive; then
	show_server_log
	die "askgate serve died during the audit"
fi
if ((status != 0)); then
	log "GraphQL over HTTP conformance: a MUST audit failed (see FAIL above)"
	exit "$status"
fi
