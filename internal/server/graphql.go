package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/internal/protect"
	"askgate/loaders"
	"askgate/resolvers"
)

func init() {
	// Refusals of the request itself are protocol errors: 400 under
	// application/graphql-response+json. An unknown APQ hash stays a
	// plain error (200), as Apollo clients expect before they resend the
	// query.
	codes := append(protect.LimitCodes(), protect.CodePersistedQueryNotInList, protect.CodePersistedQueryHashMismatch, "BAD_REQUEST")
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
	timeout := s.deps.RequestTimeout
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	srv.AddTransport(httpTransport{timeout: timeout, guard: s.operationGuard(schema)})
	srv.SetQueryCache(s.documents)
	// Trusted documents first, so that a manifest id is never taken for an
	// unknown APQ hash and persisted-only mode cannot be bypassed by
	// registering a query through APQ.
	if s.deps.Trusted != nil {
		srv.Use(s.deps.Trusted)
	}
	if apq := s.apqStore(); apq != nil {
		srv.Use(protect.NewAPQ(apq, s.log))
	}
	// Once the document is known (sent, or found by id or hash), refuse an
	// oversized one before the parser sees it.
	srv.Use(documentGuard{limits: s.deps.Limits, cached: s.documents})
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

// apqStore returns the configured APQ store, or an in-process one.
func (s *Server) apqStore() protect.APQStore {
	if s.deps.APQ != nil {
		return s.deps.APQ
	}
	st, err := protect.NewAPQMemoryStore(protect.APQMemoryOptions{})
	if err != nil { // not with the default options
		s.log.Error("automatic persisted queries are off", slog.String("error", err.Error()))
		return nil
	}
	return st
}

// aroundOperation gives each operation its own dataloaders, scoped to the
// viewer, and names the operation in the request's log line.
func (s *Server) aroundOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if oc := graphql.GetOperationContext(ctx); oc != nil {
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
	code, _ := gerr.Extensions["code"].(string)
	if rl := requestLogFrom(ctx); rl != nil {
		rl.addCode(code)
	}
	s.metrics.errors.WithLabelValues(code).Inc()
	return gerr
}

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

// documentGuard refuses documents over the size or token limits before
// they are parsed, so that a huge document costs little. A document found
// in the cache passed these checks when it was first parsed.
type documentGuard struct {
	limits protect.Limits
	cached *documentCache
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = documentGuard{}

func (documentGuard) ExtensionName() string                   { return "DocumentLimits" }
func (documentGuard) Validate(graphql.ExecutableSchema) error { return nil }

func (g documentGuard) MutateOperationParameters(_ context.Context, p *graphql.RawParams) *gqlerror.Error {
	if g.cached.Contains(p.Query) {
		return nil
	}
	if err := protect.CheckSize(p.Query, g.limits); err != nil {
		return err
	}
	return protect.CheckTokens(p.Query, g.limits)
}

// operationGuard returns the check every transport runs on a parsed and
// validated operation before executing it: the operation limits, all
// reported together, and the cost limit. It returns the operation's cost.
func (s *Server) operationGuard(schema graphql.ExecutableSchema) func(*graphql.OperationContext) (int, gqlerror.List) {
	limits := s.deps.Limits
	return func(oc *graphql.OperationContext) (int, gqlerror.List) {
		errs := limits.Check(oc.Doc, oc.Operation)
		cost := protect.Cost(schema.Schema(), oc.Doc, oc.Operation, oc.Variables)
		if err := protect.CheckCost(cost, limits.MaxCost); err != nil {
			errs = append(errs, err)
		}
		return cost, errs
	}
}
