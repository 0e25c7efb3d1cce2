#!/usr/bin/env bash
# check-generate.sh regenerates the gqlgen code and fails, printing the
# difference, if that changed anything in graph/ or resolvers/: generated code
# must always match schema/ and gqlgen.yml as committed.
#
# It compares the two directories before and after generating, so that it
# works in a working tree with uncommitted edits too, and also asks git whether
# anything there became modified or untracked.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
command -v "$GO" >/dev/null || PATH=$PATH:/usr/local/go/bin
DIRS=(graph resolvers)

snapshot=$(mktemp -d)
trap 'rm -rf "$snapshot"' EXIT
for d in "${DIRS[@]}"; do
	mkdir -p "$snapshot/before/$d"
	if [[ -d $d ]]; then
		cp -a "$d/." "$snapshot/before/$d/"
	fi
done

in_git=
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	in_git=1
	git status --porcelain -- "${DIRS[@]}" >"$snapshot/status-before"
fi

echo "check-generate: make generate"
"${MAKE:-make}" --no-print-directory generate GO="$GO"

failed=
for d in "${DIRS[@]}"; do
	mkdir -p "$snapshot/after/$d"
	if [[ -d $d ]]; then
		cp -a "$d/." "$snapshot/after/$d/"
	fi
done
if ! (cd "$snapshot" && diff -ruN before after) >"$snapshot/diff"; then
	echo "check-generate: generating changed files in ${DIRS[*]}:"
	cat "$snapshot/diff"
	failed=1
fi

if [[ -n $in_git ]]; then
	git status --porcelain -- "${DIRS[@]}" >"$snapshot/status-after"
	if ! cmp -s "$snapshot/status-before" "$snapshot/status-after"; then
		echo "check-generate: git status of ${DIRS[*]} changed:"
		diff "$snapshot/status-before" "$snapshot/status-after" || true
		git --no-pager diff -- "${DIRS[@]}"
		failed=1
	fi
fi

if [[ -n $failed ]]; then
	echo "check-generate: FAILED — run 'make generate' and commit the result." >&2
	exit 1
fi
echo "check-generate: generated code is up to date"
