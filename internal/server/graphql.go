package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/internal/limits"
	"askgate/internal/protect"
	"askgate/loaders"
	"askgate/resolvers"
)

func init() {
	// Refusals of the request itself are protocol errors: 400 under
	// application/graphql-response+json. An unknown APQ hash stays a
	// plain error (200), as Apollo clients expect before they resend the
	// query.
	codes := append(protect.LimitCodes(), protect.CodePersistedQueryNotInList, protect.CodePersistedQueryHashMismatch, codeBadRequest)
	for _, code := range codes {
		errcode.RegisterErrorType(code, errcode.KindProtocol)
	}
}

// queryCacheSize is how many parsed and validated documents are kept, so
// that a repeated query is neither parsed nor validated again.
const queryCacheSize = 1000

// graphqlHandler returns the GraphQL endpoint.
func (s *Server) graphqlHandler() http.Handler {
	schema := resolvers.NewSchema(s.resolver())
	srv := handler.New(schema)
	srv.AddTransport(transport.Options{})
	s.schema = schema
	s.apq = s.newAPQ()
	for _, t := range s.liveTransports() {
		srv.AddTransport(t)
	}
	srv.AddTransport(httpTransport{timeout: s.requestTimeout(), ops: s})
	srv.SetQueryCache(s.documents)
	srv.SetParserTokenLimit(s.deps.Limits.ParserTokenLimit())
	if s.deps.Development {
		srv.Use(extension.Introspection{})
	} else {
		// Suggestions ("Did you mean …?") would reveal the schema that
		// production keeps to itself by turning introspection off.
		srv.SetDisableSuggestion(true)
	}
	srv.SetErrorPresenter(s.presentError)
	srv.SetRecoverFunc(s.recoverPanic)
	srv.AroundOperations(s.aroundOperation)
	return srv
}

// newAPQ returns the automatic persisted queries over the configured
// store, or an in-process one. Registrations are stored only once their
// operation has passed every check (see prepare and guard).
func (s *Server) newAPQ() *protect.APQ {
	store := s.deps.APQ
	if store == nil {
		st, err := protect.NewAPQMemoryStore(protect.APQMemoryOptions{})
		if err != nil { // not with the default options
			s.log.Error("automatic persisted queries are off", slog.String("error", err.Error()))
			return nil
		}
		store = st
	}
	return protect.NewAPQ(store, s.log).Deferred()
}

// aroundOperation gives each operation its own dataloaders, scoped to the
// viewer, and names the operation in the request's log line. A
// subscription's events are rendered once for all the subscribers that
// render them alike, each with dataloaders of its own (see
// aroundSubscription).
func (s *Server) aroundOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc != nil {
		if rl := requestLogFrom(ctx); rl != nil {
			rl.mu.Lock()
			rl.operation = oc.OperationName
			if oc.Operation != nil {
				rl.operation = oc.Operation.Name
				rl.opType = string(oc.Operation.Operation)
			}
			rl.mu.Unlock()
		}
	}
	var viewerID string
	if v, ok := auth.ViewerFrom(ctx); ok {
		viewerID = v.ID
	}
	if isSubscription(oc) {
		return s.aroundSubscription(ctx, oc, viewerID, next)
	}
	return next(loaders.With(ctx, loaders.New(s.loaderConfig(), viewerID)))
}

// presentError turns any error into what a client may see: the contract's
// extensions.code and a message free of internals. Causes (SQL errors,
// upstream bodies) go to the log with the request's trace id.
func (s *Server) presentError(ctx context.Context, err error) *gqlerror.Error {
	gerr := graphql.DefaultErrorPresenter(ctx, err)
	if protect.IsTokenLimitError(gerr) {
		gerr = protect.TokenLimitError(s.deps.Limits.ParserTokenLimit())
	}
	var ce *chat.Error
	switch {
	case errors.As(err, &ce):
		if ce.Err != nil || ce.Code == chat.CodeInternal {
			s.logError(ctx, err, ce.Code)
		}
		gerr.Message = ce.Message
		gerr.Extensions = map[string]any{"code": string(ce.Code)}
		if retry := limits.RetryAfterSeconds(ce.RetryAfter); retry > 0 {
			gerr.Extensions["retryAfter"] = retry
		}
	case gerr.Extensions["code"] != nil && gerr.Err == nil:
		// gqlgen's own errors about the document or its variables
		// (GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, …) describe the
		// client's request and are safe to show as they are.
	case gerr.Err == nil && gerr.Rule == "":
		// Errors gqlgen writes itself during execution, such as a null in a
		// non-null field, hold no internals.
		gerr.Extensions = map[string]any{"code": string(chat.CodeInternal)}
		s.logError(ctx, err, chat.CodeInternal)
	default:
		s.logError(ctx, err, chat.CodeInternal)
		gerr.Message = chat.ErrorMessage(err)
		gerr.Err = nil
		gerr.Extensions = map[string]any{"code": string(chat.CodeInternal)}
	}
	if !s.deps.Development {
		// gqlgen's switch covers some validation rules only; take out the
		// suggestions of every other one here.
		gerr.Message = suggestion.ReplaceAllString(gerr.Message, "")
	}
	code, _ := gerr.Extensions["code"].(string)
	if rl := requestLogFrom(ctx); rl != nil {
		rl.addCode(code)
	}
	s.metrics.errors.WithLabelValues(code).Inc()
	return gerr
}

// suggestion matches the "did you mean" part of a validation message,
// which would reveal names of the schema that production keeps private.
var suggestion = regexp.MustCompile(`\s*Did you mean [^?]*\?`)

// recoverPanic logs a resolver's panic with its stack and reports an
// internal error in its place.
func (s *Server) recoverPanic(ctx context.Context, p any) error {
	err := fmt.Errorf("panic: %v", p)
	s.log.LogAttrs(ctx, slog.LevelError, "resolver panicked",
		slog.String("error", err.Error()),
		slog.String("stack", string(debug.Stack())),
		slog.String("trace_id", traceID(ctx)))
	return chat.Errorf(chat.CodeInternal, "internal server error")
}

// logError logs an error whose details are hidden from the client.
func (s *Server) logError(ctx context.Context, err error, code chat.Code) {
	level := slog.LevelError
	if code != chat.CodeInternal {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("code", string(code)),
		slog.String("error", err.Error()),
		slog.String("trace_id", traceID(ctx)),
	}
	if fc := graphql.GetFieldContext(ctx); fc != nil {
		attrs = append(attrs, slog.String("path", fc.Path().String()))
	}
	s.log.LogAttrs(ctx, level, "request error", attrs...)
}

// prepare readies a request's parameters before gqlgen parses and
// validates them, and refuses what must not get that far. In order:
// trusted documents (a manifest id gives the document; persisted-only mode
// refuses anything else), automatic persisted queries (a hash gives the
// document), then, for a document not in the cache, the viewer's request
// rate and the global one (RATE_LIMITED) and the document limits — size
// and tokens before parsing, and depth, aliases, root fields, directives
// and fields before validation, which an abusive document makes
// expensive. Every limit exceeded is reported together. A document
// already in the cache passed these checks when it was first parsed; its
// request is counted against the rates by guard, with its cost. It
// returns the context that carries the persisted-query state, for guard.
//
// Every transport calls prepare, then exec.CreateOperationContext, then
// guard, before it executes an operation.
func (s *Server) prepare(ctx context.Context, p *graphql.RawParams) (context.Context, gqlerror.List) {
	pre := &graphql.OperationContext{RawQuery: p.Query, OperationName: p.OperationName, Extensions: p.Extensions, Headers: p.Headers}
	ctx = graphql.WithOperationContext(ctx, pre)
	if t := s.deps.Trusted; t != nil {
		if err := t.MutateOperationParameters(ctx, p); err != nil {
			s.refused(ctx)
			return ctx, gqlerror.List{err}
		}
	}
	if s.apq != nil {
		if err := s.apq.MutateOperationParameters(ctx, p); err != nil {
			s.refused(ctx)
			return ctx, gqlerror.List{err}
		}
	}
	limits := s.deps.Limits
	if doc, ok := s.documents.Peek(p.Query); ok {
		// The document passed the size and token limits when it was
		// first parsed; the operation limits depend on the operation
		// this request selects. The request rates are counted by guard,
		// with the cost (or by refused, when it does not get there).
		errs := limits.PreCheckDocument(doc, p.OperationName, s.deps.Development)
		if len(errs) > 0 {
			s.refused(ctx)
		}
		return ctx, errs
	}
	// A document to parse: the request rates first, so that a refused
	// request costs nothing more.
	ctx, err := s.countRate(ctx)
	if err != nil {
		return ctx, gqlerror.List{err}
	}
	if err := protect.CheckSize(p.Query, limits); err != nil {
		return ctx, gqlerror.List{err}
	}
	if err := protect.CheckTokens(p.Query, limits); err != nil {
		return ctx, gqlerror.List{err}
	}
	return ctx, limits.PreCheck(p.Query, p.OperationName, s.deps.Development)
}

// guard checks a parsed and validated operation before it executes: its
// cost must be within the limit, then the request rates (unless prepare
// counted them) and the viewer's cost budget must let it through, in one
// call (RATE_LIMITED otherwise); its cost is debited, and what it did not
// use is refunded once it has run (see Server.admit). It returns the cost.
// Once the operation
// passes, an APQ registration it carried is stored (prepCtx is the context
// prepare returned).
func (s *Server) guard(prepCtx context.Context, oc *graphql.OperationContext) (int, gqlerror.List) {
	cost := protect.Cost(s.schema.Schema(), oc.Doc, oc.Operation, oc.Variables)
	if err := protect.CheckCost(cost, s.deps.Limits.MaxCost); err != nil {
		s.refused(prepCtx)
		return cost, gqlerror.List{err}
	}
	if err := s.admit(prepCtx, oc, cost); err != nil {
		return cost, gqlerror.List{err}
	}
	if s.apq != nil {
		s.apq.Commit(prepCtx)
	}
	return cost, nil
}
