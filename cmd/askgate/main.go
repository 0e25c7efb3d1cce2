// Command askgate is the askgate GraphQL gateway.
//
// Usage:
//
//	askgate serve     [flags]   run the server (askgate serve --help lists the flags)
//	askgate migrate   [flags]   apply the store's schema migrations and exit
//	askgate token --sub ID [--scope S] [--ttl D] [--name N] [--email E]
//	                            mint a development access token
//	askgate seed --sub ID       fill the store with demo conversations
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// A GraphQL response allocates many small short-lived objects (gqlgen's
// field contexts and marshalers); collecting four times less often than
// Go's default (100) cut the chat screen's CPU time per request by a
// fifth in bench/compare.sh, for a heap that stays a few tens of MB.
// GOGC and GOMEMLIMIT in the environment override it as usual.
const defaultGCPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "askgate:", err)
		os.Exit(1)
	}
}

const usage = `askgate is a GraphQL gateway for LLM question-answering products.

Usage:
  askgate serve    [flags]  run the server
  askgate migrate  [flags]  apply the store's schema migrations and exit
  askgate token    [flags]  mint a development access token
  askgate seed     [flags]  add demo conversations for a user

Run "askgate COMMAND --help" for a command's flags.
`

// run is askgate's whole program, with its environment passed in so that
// tests can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return migrate(ctx, rest, getenv, stderr)
	case "token":
		return token(rest, getenv, stdout, stderr)
	case "seed":
		return seed(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
