package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"askgate/internal/gqlexec"
	"askgate/internal/server/subscriptions"
)

// Media types of GraphQL over HTTP.
const (
	mediaGraphQLResponse = "application/graphql-response+json"
	mediaJSON            = "application/json"
)

// codeBadRequest is the code of an HTTP request that is not a GraphQL
// request (an addition to the contract's codes).
const codeBadRequest = "BAD_REQUEST"

// maxBodyBytes caps a request body.
const maxBodyBytes = 2 << 20

// httpTransport serves queries and mutations over POST and queries over
// GET, per the GraphQL over HTTP specification. It replaces gqlgen's POST
// and GET transports because those re-encode every response through
// encoding/json, which re-scans (compacts) the whole already-encoded data
// — a tenth of the CPU time of a 58 kB chat screen — and because askgate
// needs the specification's status codes and media types exactly.
type httpTransport struct {
	// timeout bounds each operation.
	timeout time.Duration
	// ops prepares and guards operations.
	ops operations
}

// operations are the checks every transport runs around gqlgen's own
// parsing and validation (see Server.prepare and Server.guard).
type operations interface {
	prepare(ctx context.Context, p *graphql.RawParams) (context.Context, gqlerror.List)
	guard(prepCtx context.Context, oc *graphql.OperationContext) (int, gqlerror.List)
	// refused is told of an operation refused between prepare and guard.
	refused(prepCtx context.Context)
	// cachingFor says how the successful response of a persisted query
	// sent with GET may be cached (see httpcache.go).
	cachingFor(r *http.Request, oc *graphql.OperationContext) httpCaching
}

var _ graphql.Transport = httpTransport{}

// Supports takes every request but WebSocket upgrades, which belong to
// another transport; Do answers methods other than GET and POST with 405.
func (httpTransport) Supports(r *http.Request) bool {
	return r.Header.Get("Upgrade") == ""
}

// Do runs one operation.
func (t httpTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	media, ok := negotiate(r.Header.Get("Accept"))
	if !ok {
		writeErrors(w, http.StatusNotAcceptable, "the response can only be "+mediaGraphQLResponse+" or "+mediaJSON, codeBadRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeResponse(w, media, http.StatusMethodNotAllowed, &graphql.Response{Errors: gqlerror.List{requestError("GraphQL is served over GET and POST")}})
		return
	}
	start := graphql.Now()
	params, status, err := readParams(w, r)
	if err != nil {
		writeResponse(w, media, status, &graphql.Response{Errors: gqlerror.List{requestError(err.Error())}})
		return
	}
	if strings.TrimSpace(params.Query) == "" && !namesStoredOperation(params) {
		writeResponse(w, media, http.StatusBadRequest, &graphql.Response{Errors: gqlerror.List{requestError("the request has no query")}})
		return
	}
	// Only a GET naming a stored document (an APQ hash or a trusted
	// document id, as checked above) without the document can be cached:
	// see httpcache.go.
	cacheable := r.Method == http.MethodGet && strings.TrimSpace(params.Query) == ""
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	ctx, cancel := context.WithTimeout(r.Context(), t.timeout)
	defer cancel()
	prepCtx, errs := t.ops.prepare(ctx, params)
	if errs != nil {
		status := refusalStatus(w, errs, http.StatusBadRequest)
		writeResponse(w, media, status, exec.DispatchError(prepCtx, errs))
		return
	}
	rc, errs := exec.CreateOperationContext(ctx, params)
	if errs != nil {
		t.ops.refused(prepCtx)
		resp := exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		status := http.StatusOK
		if media == mediaGraphQLResponse && errcode.GetErrorKind(errs) == errcode.KindProtocol {
			status = http.StatusBadRequest
		}
		writeResponse(w, media, status, resp)
		return
	}
	if r.Method == http.MethodGet && rc.Operation != nil && rc.Operation.Operation != ast.Query {
		t.ops.refused(prepCtx)
		w.Header().Set("Allow", http.MethodPost)
		writeResponse(w, media, http.StatusMethodNotAllowed, &graphql.Response{
			Errors: gqlerror.List{requestError("GET only runs queries; send " + string(rc.Operation.Operation) + "s with POST")},
		})
		return
	}
	if isSubscription(rc) {
		t.ops.refused(prepCtx)
		writeResponse(w, media, http.StatusBadRequest, &graphql.Response{
			Errors: gqlerror.List{requestError("subscriptions run over a WebSocket (graphql-transport-ws) or server-sent events (Accept: text/event-stream), not a plain HTTP request")},
		})
		return
	}
	cost, errs := t.ops.guard(prepCtx, rc)
	if len(errs) > 0 {
		status := refusalStatus(w, errs, http.StatusBadRequest)
		resp := exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		writeResponse(w, media, status, subscriptions.WithCost(resp, cost, rc))
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, rc)
	resp := subscriptions.WithCost(responses(ctx), cost, rc)
	var caching httpCaching // no-store
	if cacheable && rc.Operation != nil && rc.Operation.Operation == ast.Query && len(resp.Errors) == 0 {
		caching = t.ops.cachingFor(r, rc)
	}
	writeCached(w, media, executionStatus(w, resp), resp, caching)
	if rc.Operation != nil && rc.Operation.Operation == ast.Query {
		// A query's data comes from gqlexec.MarshalData, is written out
		// and nothing else refers to it. Nothing else may be recycled:
		// other data can be shared (a subscription event's rendering).
		gqlexec.ReleaseData(resp.Data)
	}
}

// executionStatus returns the HTTP status of an executed operation: 200,
// unless it produced no data and only RATE_LIMITED errors — an ask
// refused by the answer limits, which only its resolver can check — which
// gets 429 and Retry-After like a request the limits refused before it
// ran.
func executionStatus(w http.ResponseWriter, resp *graphql.Response) int {
	if len(resp.Errors) == 0 || (len(resp.Data) > 0 && string(resp.Data) != "null") {
		return http.StatusOK
	}
	for _, e := range resp.Errors {
		if e == nil || e.Extensions["code"] != codeRateLimited {
			return http.StatusOK
		}
	}
	return refusalStatus(w, resp.Errors, http.StatusOK)
}

// negotiate picks the response media type from an Accept header: the
// specification's application/graphql-response+json when the client lists
// it, application/json when it lists that, a wildcard, or nothing.
func negotiate(accept string) (string, bool) {
	if accept == "" {
		return mediaJSON, true
	}
	best, bestQ := "", -1.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		var cand string
		switch mt {
		case mediaGraphQLResponse:
			cand = mediaGraphQLResponse
		case mediaJSON, "application/*", "*/*":
			cand = mediaJSON
		default:
			continue
		}
		if q > 0 && (q > bestQ || (q == bestQ && cand == mediaGraphQLResponse)) {
			best, bestQ = cand, q
		}
	}
	return best, best != ""
}

// readParams decodes the operation of a GET (query string) or POST (JSON
// body) request. On failure it returns the HTTP status to answer with.
func readParams(w http.ResponseWriter, r *http.Request) (*graphql.RawParams, int, error) {
	params := &graphql.RawParams{}
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		params.Query = q.Get("query")
		params.OperationName = q.Get("operationName")
		defer setDocumentID(params, q.Get("documentId"))
		for name, dst := range map[string]any{"variables": &params.Variables, "extensions": &params.Extensions} {
			if v := q.Get(name); v != "" {
				if err := decodeJSON(strings.NewReader(v), dst); err != nil {
					return nil, http.StatusBadRequest, errors.New(name + " must be a JSON object")
				}
			}
		}
		return params, 0, nil
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != mediaJSON {
		return nil, http.StatusUnsupportedMediaType, errors.New("the request body must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return nil, http.StatusRequestEntityTooLarge, errors.New("the request body is over 2 MB")
		}
		return nil, http.StatusBadRequest, errors.New("the request body could not be read")
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return nil, http.StatusBadRequest, errors.New("batched requests are not supported: send one operation per request")
	}
	var withID struct {
		*graphql.RawParams
		// DocumentID names a trusted document, as graphql-codegen's
		// clients send it.
		DocumentID string `json:"documentId"`
	}
	withID.RawParams = params
	if err := decodeJSON(bytes.NewReader(body), &withID); err != nil {
		return nil, http.StatusBadRequest, errors.New("the request body is not a JSON object with a query")
	}
	setDocumentID(params, withID.DocumentID)
	return params, 0, nil
}

// setDocumentID passes a request's top-level documentId on to the trusted
// documents extension, which reads it from the extensions.
func setDocumentID(p *graphql.RawParams, id string) {
	if id == "" {
		return
	}
	if p.Extensions == nil {
		p.Extensions = make(map[string]any)
	}
	p.Extensions["documentId"] = id
}

// namesStoredOperation reports whether a request without a query names a
// stored one instead: an automatic persisted query hash or a trusted
// document id, which the persisted query extensions resolve.
func namesStoredOperation(p *graphql.RawParams) bool {
	_, apq := p.Extensions["persistedQuery"]
	_, doc := p.Extensions["documentId"]
	return apq || doc
}

// decodeJSON decodes one JSON value, keeping numbers exact.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

// requestError is an error about the HTTP request itself.
func requestError(msg string) *gqlerror.Error {
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": codeBadRequest}}
}

// bufferPool recycles response buffers.
var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeResponse writes a GraphQL response that must not be cached. The
// data is already JSON (gqlgen encoded it while executing) and is copied as
// it is.
func writeResponse(w http.ResponseWriter, media string, status int, resp *graphql.Response) {
	writeCached(w, media, status, resp, httpCaching{})
}

// writeCached writes a GraphQL response with the caching headers of c, or
// only those (304 Not Modified) when c validates the response and the
// request's If-None-Match matches its ETag.
func writeCached(w http.ResponseWriter, media string, status int, resp *graphql.Response, c httpCaching) {
	h := w.Header()
	h.Set("Vary", varyHeader)
	h.Set("Cache-Control", cmp.Or(c.cacheControl, "no-store"))
	if c.validate {
		// The tag covers the data alone: a 304 needs no body built.
		tag := etag(media, c.viewer, resp.Data)
		h.Set("ETag", tag)
		if noneMatch(c.match, tag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	buf := bufferPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 {
			buf.Reset()
			bufferPool.Put(buf)
		}
	}()
	buf.WriteByte('{')
	sep := false
	field := func(name string) {
		if sep {
			buf.WriteByte(',')
		}
		sep = true
		buf.WriteString(`"` + name + `":`)
	}
	if len(resp.Errors) > 0 {
		field("errors")
		b, err := json.Marshal(resp.Errors)
		if err != nil {
			b = []byte(`[{"message":"internal server error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]`)
		}
		buf.Write(b)
	}
	if resp.Data != nil {
		field("data")
		buf.Write(resp.Data)
	}
	if len(resp.Extensions) > 0 {
		field("extensions")
		b, err := json.Marshal(resp.Extensions)
		if err != nil {
			b = []byte("{}")
		}
		buf.Write(b)
	}
	buf.WriteByte('}')
	h.Set("Content-Type", media+"; charset=utf-8")
	// A known length spares the chunked encoding of a large response.
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
