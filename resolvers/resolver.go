// Package resolvers implements askgate's GraphQL schema (schema/*.graphqls)
// on top of the domain in internal/chat. The *.resolvers.go files follow the
// schema files one for one and stay thin: they check arguments and call the
// store through the per-operation loaders.
package resolvers

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"

	"askgate/graph"
	"askgate/internal/answers"
	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/loaders"
)

// Resolver holds the dependencies of every resolver. It is built once at
// start-up and is safe for concurrent use.
type Resolver struct {
	Store chat.Store
	Users chat.UserDirectory
	// Answers asks the language model and streams its answers.
	Answers *answers.Manager
}

// NewSchema returns the executable schema with its resolvers and the
// @requiresScope directive.
func NewSchema(r *Resolver) graphql.ExecutableSchema {
	return graph.NewExecutableSchema(graph.Config{
		Resolvers: r,
		Directives: graph.DirectiveRoot{
			RequiresScope: RequiresScope,
		},
	})
}

// RequiresScope implements @requiresScope: the field's resolver runs only
// when the viewer's token carries the scope.
func RequiresScope(ctx context.Context, _ any, next graphql.Resolver, scope string) (any, error) {
	v, ok := auth.ViewerFrom(ctx)
	if !ok {
		return nil, chat.Errorf(chat.CodeUnauthenticated, "authentication required")
	}
	if !v.Has(scope) {
		return nil, chat.Errorf(chat.CodeForbidden, "the access token lacks the %q scope", scope)
	}
	return next(ctx)
}

// viewerID returns the id of the user the operation runs for. The server
// authenticates every operation before it executes, so a missing viewer is a
// wiring error, reported as UNAUTHENTICATED rather than risking an
// unscoped read.
func viewerID(ctx context.Context) (string, error) {
	v, ok := auth.ViewerFrom(ctx)
	if !ok || v.ID == "" {
		return "", chat.Errorf(chat.CodeUnauthenticated, "authentication required")
	}
	return v.ID, nil
}

// loadersFor returns the operation's loaders; the server installs them
// around every operation.
func loadersFor(ctx context.Context) (*loaders.Loaders, error) {
	l := loaders.For(ctx)
	if l == nil {
		return nil, chat.Errorf(chat.CodeInternal, "internal server error")
	}
	return l, nil
}

// Title limits.
const (
	maxTitleLength = 200
	defaultTitle   = "New conversation"
)

// checkTitle trims a title and checks it is 1 to maxTitleLength characters
// without control characters.
func checkTitle(title string) (string, error) {
	t := strings.TrimSpace(title)
	if t == "" {
		return "", chat.Errorf(chat.CodeBadUserInput, "title must not be empty")
	}
	if utf8.RuneCountInString(t) > maxTitleLength {
		return "", chat.Errorf(chat.CodeBadUserInput, "title must be at most %d characters", maxTitleLength)
	}
	if strings.ContainsFunc(t, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", chat.Errorf(chat.CodeBadUserInput, "title must not contain control characters")
	}
	return t, nil
}

// optional returns nil for an empty string, for nullable fields.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Compile-time checks that every resolver interface is implemented.
var (
	_ graph.ResolverRoot                   = (*Resolver)(nil)
	_ graph.QueryResolver                  = (*queryResolver)(nil)
	_ graph.MutationResolver               = (*mutationResolver)(nil)
	_ graph.ConversationResolver           = (*conversationResolver)(nil)
	_ graph.MessageResolver                = (*messageResolver)(nil)
	_ graph.UserResolver                   = (*userResolver)(nil)
	_ graph.ConversationConnectionResolver = (*conversationConnectionResolver)(nil)
	_ graph.MessageConnectionResolver      = (*messageConnectionResolver)(nil)
	_ graph.SubscriptionResolver           = (*subscriptionResolver)(nil)
)
