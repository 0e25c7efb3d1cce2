package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"askgate/internal/auth"
	"askgate/internal/demo"
)

// migrate applies the store's migrations and exits.
func migrate(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	def := getenv("ASKGATE_DATABASE_URL")
	if def == "" {
		def = "sqlite:data/askgate.db"
	}
	dbURL := fs.String("database-url", def, "postgres://… or a SQLite path (ASKGATE_DATABASE_URL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	return st.Close()
}

// token mints an HS256 access token with the configured secret.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", stderr)
	sub := fs.String("sub", "", "the user id (required)")
	scope := fs.String("scope", auth.ScopeRead+" "+auth.ScopeWrite, "space-separated scopes")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	name := fs.String("name", "", "the name claim")
	email := fs.String("email", "", "the email claim")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("--sub is required")
	}
	cfg := &config{JWTSecret: getenv("ASKGATE_JWT_SECRET"), JWTJWKSURL: getenv("ASKGATE_JWT_JWKS_URL"), Mode: getenv("ASKGATE_MODE")}
	if cfg.Mode == "" {
		cfg.Mode = modeDevelopment
	}
	secret, _ := cfg.secret()
	if secret == "" {
		return errors.New("ASKGATE_JWT_SECRET: needed to mint a token (without it the server takes only JWKS tokens, or none outside development mode)")
	}
	tok, err := auth.Mint([]byte(secret), auth.MintClaims{
		Subject: *sub, Scope: *scope, TTL: *ttl, Name: *name, Email: *email,
		Issuer: getenv("ASKGATE_JWT_ISSUER"), Audience: getenv("ASKGATE_JWT_AUDIENCE"),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// seed adds demo conversations, each with question and answer pairs, for
// one user: for trying GraphiQL and for benchmarks.
func seed(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("seed", stderr)
	def := getenv("ASKGATE_DATABASE_URL")
	if def == "" {
		def = "sqlite:data/askgate.db"
	}
	dbURL := fs.String("database-url", def, "postgres://… or a SQLite path (ASKGATE_DATABASE_URL)")
	sub := fs.String("sub", devUser, "the user who owns the conversations")
	n := fs.Int("conversations", 25, "how many conversations")
	pairs := fs.Int("pairs", 6, "question/answer pairs per conversation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := openStore(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := demo.Seed(ctx, st, *sub, *n, *pairs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "added %d conversations for %s\n", *n, *sub)
	return nil
}
