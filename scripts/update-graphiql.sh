#!/usr/bin/env bash
# update-graphiql.sh refreshes the GraphiQL build that askgate serves from its
# binary (internal/server/graphiql/assets/) with the npm registry's packages.
#
#   scripts/update-graphiql.sh [GRAPHIQL_VERSION [REACT_VERSION]]
#
# GraphiQL 4.x is the last line that ships a UMD build (graphiql.min.js, which
# reads the globals React and ReactDOM); 5.x ships ES modules only. React 19
# ships no UMD builds, so React stays on 18.x. Run the package tests after an
# update: go test ./internal/server/graphiql/
set -euo pipefail

GRAPHIQL_VERSION=${1:-4.1.2}
REACT_VERSION=${2:-18.3.1}

root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/internal/server/graphiql/assets
command -v npm >/dev/null || { echo "update-graphiql: npm not found" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "update-graphiql: npm pack graphiql@$GRAPHIQL_VERSION react@$REACT_VERSION react-dom@$REACT_VERSION"
pkgs=(graphiql react react-dom)
mapfile -t tarballs < <(npm pack --silent "graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION")
[[ ${#tarballs[@]} -eq 3 ]] || { echo "update-graphiql: npm pack gave ${#tarballs[@]} tarballs, want 3" >&2; exit 1; }
for i in "${!pkgs[@]}"; do
	mkdir "${pkgs[i]}"
	tar -xzf "${tarballs[i]}" -C "${pkgs[i]}" --strip-components=1
done

# extract FROM TO copies one file, failing clearly if the package lacks it.
extract() {
	[[ -f $1 ]] || { echo "update-graphiql: $1 is not in the package (no UMD build in this version?)" >&2; exit 1; }
	cp "$1" "$dest/$2"
}

mkdir -p "$dest"
extract graphiql/graphiql.min.js graphiql.min.js
extract graphiql/graphiql.min.css graphiql.min.css
extract graphiql/LICENSE LICENSE.graphiql
extract react/umd/react.production.min.js react.production.min.js
extract react/LICENSE LICENSE.react
extract react-dom/umd/react-dom.production.min.js react-dom.production.min.js
extract react-dom/LICENSE LICENSE.react-dom

version() { sed -n 's/^  "version": "\(.*\)",$/\1/p' "$1/package.json"; }
gv=$(version graphiql) rv=$(version react) rdv=$(version react-dom)

# Record the versions in the README's version table.
sed -i \
	-e "s/^| graphiql | [^|]* |/| graphiql | $gv |/" \
	-e "s/^| react | [^|]* |/| react | $rv |/" \
	-e "s/^| react-dom | [^|]* |/| react-dom | $rdv |/" \
	"$dest/README.md"

echo "update-graphiql: graphiql $gv, react $rv, react-dom $rdv -> $dest"
du -ch "$dest"/*.js "$dest"/*.css | tail -n1
