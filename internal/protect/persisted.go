package protect

// This file holds what automatic persisted queries (apq.go) and trusted
// documents (manifest.go) share: error codes, hashing, reading the request
// extensions that name a stored document, and the per-operation stats the
// two record.
//
// When both are enabled, the trusted-documents extension must be added to
// the handler before the APQ extension:
//
//	srv.Use(trusted) // resolves manifest ids; refuses unlisted operations in persisted-only mode
//	srv.Use(apq)     // resolves and registers APQ hashes
//
// A document resolved from the manifest by its id is then left alone by
// APQ; anything else with extensions.persistedQuery goes through APQ.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Error codes of persisted queries, set as extensions.code. The first two
// are in the contract; the third is askgate's own.
const (
	// CodePersistedQueryNotFound: an APQ hash (or a document id) is unknown.
	// Apollo clients react to it (with the message "PersistedQueryNotFound")
	// by sending the same request again with the document.
	CodePersistedQueryNotFound = "PERSISTED_QUERY_NOT_FOUND"
	// CodePersistedQueryNotInList: persisted-only mode, and the operation
	// is neither named by a manifest id nor a manifest document.
	CodePersistedQueryNotInList = "PERSISTED_QUERY_NOT_IN_LIST"
	// CodePersistedQueryHashMismatch: the request carries a document whose
	// SHA-256 is not the hash it claims (APQ), or which is not the document
	// the manifest has under the id it names. Nothing is stored or run.
	CodePersistedQueryHashMismatch = "PERSISTED_QUERY_HASH_MISMATCH"
)

// persistedCodeBadRequest is the code of a malformed persisted-query
// request (an extension of the wrong shape, an unsupported APQ version).
// It is the code askgate's HTTP transport uses for malformed requests.
const persistedCodeBadRequest = "BAD_REQUEST"

// persistedQueryNotFoundMessage is the message Apollo clients match on to
// resend an operation with its document.
const persistedQueryNotFoundMessage = "PersistedQueryNotFound"

// persistedNotInListMessage is the message of CodePersistedQueryNotInList.
const persistedNotInListMessage = "operation not in the persisted query list"

// persistedMaxIDLen bounds a document id taken from a request, so that a
// request cannot make the server hash, log or look up megabytes of id.
const persistedMaxIDLen = 256

// persistedError returns a client error with extensions.code set. It has no
// cause, so the server's error presenter shows it as it is.
func persistedError(code, message string) *gqlerror.Error {
	return &gqlerror.Error{Message: message, Extensions: map[string]any{"code": code}}
}

// persistedQueryHash returns the SHA-256 of a document, as 64 lowercase hex
// digits: the APQ hash and the key of a persisted-documents map.
func persistedQueryHash(document string) string {
	sum := sha256.Sum256([]byte(document))
	return hex.EncodeToString(sum[:])
}

// normalizePersistedHash returns h as 64 lowercase hex digits when it is a
// SHA-256 in hex (either case, optionally written "sha256:<hex>" as in the
// GraphQL over HTTP persisted documents proposal), and false otherwise.
func normalizePersistedHash(h string) (string, bool) {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) != sha256.Size*2 {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return "", false
		}
	}
	return strings.ToLower(h), true
}

// readPersistedQuery reads extensions.persistedQuery of the APQ protocol,
// {"version": 1, "sha256Hash": "…"}. present is false when the request has
// none. The hash is returned as sent (a manifest id need not be hex); the
// caller checks its form.
func readPersistedQuery(ext map[string]any) (hash string, present bool, err *gqlerror.Error) {
	raw, ok := ext["persistedQuery"]
	if !ok || raw == nil {
		return "", false, nil
	}
	pq, ok := raw.(map[string]any)
	if !ok {
		return "", true, persistedError(persistedCodeBadRequest,
			`extensions.persistedQuery must be an object {"version": 1, "sha256Hash": "…"}`)
	}
	if !persistedVersionIsOne(pq["version"]) {
		return "", true, persistedError(persistedCodeBadRequest,
			"unsupported persisted query version: only version 1 is supported")
	}
	hash, ok = pq["sha256Hash"].(string)
	if !ok || hash == "" {
		return "", true, persistedError(persistedCodeBadRequest,
			"extensions.persistedQuery.sha256Hash must be a non-empty string")
	}
	if len(hash) > persistedMaxIDLen {
		return "", true, persistedError(persistedCodeBadRequest,
			"extensions.persistedQuery.sha256Hash is too long")
	}
	return hash, true, nil
}

// persistedVersionIsOne reports whether v, a decoded JSON number, is 1. Transports
// decode numbers as json.Number (askgate's HTTP transport) or float64
// (encoding/json defaults, as in gqlgen's WebSocket transport).
func persistedVersionIsOne(v any) bool {
	switch n := v.(type) {
	case json.Number:
		return n.String() == "1"
	case float64:
		return n == 1
	case int:
		return n == 1
	case int64:
		return n == 1
	default:
		return false
	}
}

// readDocumentID returns the id of a trusted document named by the request:
// extensions.documentId (where the transport puts a top-level "documentId",
// as graphql-codegen clients send it) or else
// extensions.persistedQuery.sha256Hash (as Apollo clients send it). fromDocID
// says which. When the request names none, id is "".
func readDocumentID(ext map[string]any) (id string, fromDocID bool, err *gqlerror.Error) {
	pqHash, _, err := readPersistedQuery(ext)
	if err != nil {
		return "", false, err
	}
	raw, ok := ext["documentId"]
	if !ok || raw == nil {
		return pqHash, false, nil
	}
	docID, ok := raw.(string)
	if !ok || docID == "" {
		return "", false, persistedError(persistedCodeBadRequest, "documentId must be a non-empty string")
	}
	if len(docID) > persistedMaxIDLen {
		return "", false, persistedError(persistedCodeBadRequest, "documentId is too long")
	}
	if pqHash != "" && pqHash != docID {
		return "", false, persistedError(persistedCodeBadRequest,
			"documentId and extensions.persistedQuery.sha256Hash name different documents")
	}
	return docID, true, nil
}

// persistedStatsName is the key of PersistedQueryStats in the operation's
// graphql.Stats.
const persistedStatsName = "PersistedQuery"

// PersistedQueryStats says how an operation's document was obtained. The
// trusted-documents and APQ extensions record it in the operation context's
// Stats; read it with PersistedQueryStatsFrom (for logs and metrics).
type PersistedQueryStats struct {
	// ManifestID is the manifest id the document was taken from, if any.
	ManifestID string
	// Trusted is true when the document is in the manifest, named by its
	// id or sent as a text the manifest holds.
	Trusted bool
	// APQHash is the APQ hash of the request, if it used APQ.
	APQHash string
	// APQSentQuery is true when an APQ request carried the document (a
	// registration) rather than only its hash.
	APQSentQuery bool

	// pendingQuery is a registration a Deferred APQ left for Commit.
	pendingQuery string
}

// PersistedQueryStatsFrom returns the persisted-query stats of the
// operation in ctx, or nil when the operation used no persisted query.
func PersistedQueryStatsFrom(ctx context.Context) *PersistedQueryStats {
	if !graphql.HasOperationContext(ctx) {
		return nil
	}
	s, _ := graphql.GetOperationContext(ctx).Stats.GetExtension(persistedStatsName).(*PersistedQueryStats)
	return s
}

// persistedStats returns the stats of the operation in ctx, creating them.
// Without an operation context (a caller that is not gqlgen's executor) it
// returns a throwaway value.
func persistedStats(ctx context.Context) *PersistedQueryStats {
	if !graphql.HasOperationContext(ctx) {
		return &PersistedQueryStats{}
	}
	oc := graphql.GetOperationContext(ctx)
	s, _ := oc.Stats.GetExtension(persistedStatsName).(*PersistedQueryStats)
	if s == nil {
		s = &PersistedQueryStats{}
		oc.Stats.SetExtension(persistedStatsName, s)
	}
	return s
}

// resolvedFromManifest reports whether the trusted-documents extension
// already took this operation's document from the manifest by its id.
func resolvedFromManifest(ctx context.Context) bool {
	s := PersistedQueryStatsFrom(ctx)
	return s != nil && s.ManifestID != ""
}
