package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"askgate/internal/answercache"
	"askgate/internal/answers"
	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/internal/cluster"
	"askgate/internal/limits"
	"askgate/internal/llm"
	"askgate/internal/protect"
	"askgate/internal/server"
	"askgate/internal/store"
	"askgate/internal/stream"
	"askgate/internal/users"
)

// maxHeaderBytes bounds request headers. It is above net/http's default
// so that an oversized Authorization header still reaches the
// authentication layer and gets the contract's 401 UNAUTHENTICATED.
const maxHeaderBytes = 2 << 20

// devUser is the subject of the token GraphiQL starts with in development.
const devUser = "dev-user"

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("askgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// openStore opens and migrates the configured store.
func openStore(ctx context.Context, url string) (store.Store, error) {
	st, err := store.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("ASKGATE_DATABASE_URL: %w", err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrating the store: %w", err)
	}
	return st, nil
}

// serve runs the server until ctx is cancelled, then shuts down gracefully.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(newFlagSet("serve", stderr), args, getenv)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)

	st, err := openStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()

	secret, isDev := cfg.secret()
	verifier, err := auth.New(ctx, auth.Config{
		Secret:   []byte(secret),
		JWKSURL:  cfg.JWTJWKSURL,
		Issuer:   cfg.JWTIssuer,
		Audience: cfg.JWTAudience,
		Logger:   log,
	})
	if err != nil {
		return fmt.Errorf("ASKGATE_JWT_JWKS_URL: %w", err)
	}
	defer verifier.Close()
	if isDev {
		log.Warn("ASKGATE_JWT_SECRET is not set: tokens are signed with the PUBLIC development secret; never expose this server")
	}

	var dir chat.UserDirectory = users.NewDirectory(st)
	var collectors []prometheus.Collector
	if cfg.UserServiceURL != "" {
		c, err := users.NewClient(cfg.UserServiceURL, users.Options{Timeout: cfg.UserServiceTimeout})
		if err != nil {
			return fmt.Errorf("ASKGATE_USER_SERVICE_URL: %w", err)
		}
		dir = c
		if cfg.UserCacheTTL > 0 {
			// Profiles are cached in this process; each instance has its own.
			cache, err := users.NewCache(c, users.CacheOptions{TTL: cfg.UserCacheTTL, Stale: cfg.UserCacheStale, Logger: log})
			if err != nil {
				return fmt.Errorf("ASKGATE_USER_CACHE_TTL: %w", err)
			}
			defer cache.Close()
			dir = cache
			collectors = append(collectors, cache)
		}
	}

	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	defer tp.Shutdown(context.Background())

	var rdb *redis.Client
	if cfg.RedisURL != "" {
		opts, _ := redis.ParseURL(cfg.RedisURL) // checked by parseConfig
		// Fail fast when Redis is down: every use of it has a fallback.
		opts.DialTimeout, opts.MaxRetries, opts.DialerRetries = time.Second, 1, 1
		rdb = redis.NewClient(opts)
		defer rdb.Close()
	}
	var backend chat.LLM = llm.NewDemo(llm.DemoOptions{})
	if cfg.LLMBaseURL != "" {
		c, err := llm.NewClient(cfg.LLMBaseURL, llm.Options{
			APIKey:            cfg.LLMAPIKey,
			DefaultModel:      cfg.LLMModel,
			FirstTokenTimeout: cfg.LLMFirstTokenTimeout,
			IdleTimeout:       cfg.LLMIdleTimeout,
			Logger:            log,
		})
		if err != nil {
			return fmt.Errorf("ASKGATE_LLM_BASE_URL: %w", err)
		}
		backend = c
	} else {
		log.Info("no ASKGATE_LLM_BASE_URL: answers come from the built-in demo backend, not a language model")
	}
	var tokens chat.TokenLog
	var coord chat.Cluster = &cluster.Local{}
	if rdb != nil {
		// Several instances share answers through Redis: any instance
		// streams any answer, and finishes those of an instance that died.
		rlog := stream.NewRedis(rdb, stream.RedisOptions{Retention: cfg.AnswerRetention})
		defer rlog.Close()
		tokens, coord = rlog, cluster.NewRedis(rdb, "")
	} else {
		mlog := stream.NewMemory(stream.MemoryOptions{Retention: cfg.AnswerRetention})
		defer mlog.Close()
		tokens = mlog
	}
	historyTokens := cfg.LLMHistoryTokens
	if historyTokens == 0 {
		historyTokens = -1 // none
	}
	// The limits have a Redis client of their own that gives up when a
	// request's context does (the in-process limits take over).
	var lrdb *redis.Client
	if rdb != nil {
		opts, _ := redis.ParseURL(cfg.RedisURL) // checked by parseConfig
		opts.DialTimeout, opts.MaxRetries, opts.DialerRetries = time.Second, 1, 1
		opts.ContextTimeoutEnabled = true
		lrdb = redis.NewClient(opts)
		defer lrdb.Close()
	}
	slots, tokenQuota, answerFallback := answerLimits(cfg, lrdb, log)
	if answerFallback != nil {
		defer answerFallback.Close()
	}
	cache := answerCache(cfg, lrdb, log)
	if cache != nil {
		metered := answercache.NewMetered(cache)
		collectors = append(collectors, metered)
		cache = metered
	}
	gen := answers.New(answers.Options{
		Store:         st,
		LLM:           backend,
		Log:           tokens,
		Logger:        log,
		SystemPrompt:  cfg.LLMSystemPrompt,
		DefaultModel:  cfg.LLMModel,
		HistoryTokens: historyTokens,
		MaxTokens:     cfg.LLMMaxTokens,
		Cluster:       coord,
		LeaseTTL:      cfg.LeaseTTL,
		Concurrency:   slots,
		TokenQuota:    tokenQuota,
		Cache:         cache,
	})
	// On every way out (an error below, or after the graceful shutdown,
	// when it returns at once) the Manager's loops stop before the log,
	// Redis and the store they use are closed.
	defer gen.Shutdown(context.Background())
	if _, err := gen.Recover(ctx); err != nil {
		return err
	}

	deps := server.Deps{
		Store:       st,
		Users:       dir,
		Auth:        verifier,
		Logger:      log,
		Tracer:      tp.Tracer("askgate"),
		Development: cfg.Mode == modeDevelopment,
		LoaderWait:  cfg.LoaderWait,
		Collectors:  collectors,

		RequestTimeout: cfg.RequestTimeout,
		Limits:         cfg.Limits,
		Answers:        gen,
		Subscriptions: server.SubscriptionOptions{
			InitTimeout:      cfg.WSInitTimeout,
			MaxSubscriptions: cfg.WSMaxSubscriptions,
			AllowedOrigins:   cfg.AllowedOrigins,
		},
	}
	if rdb != nil {
		deps.Redis = redisPinger{rdb}
		deps.APQ = protect.NewAPQRedisStore(rdb, protect.APQRedisOptions{})
	}
	lcfg := server.RequestLimitsConfig{Rate: cfg.RateLimit, Global: cfg.GlobalRateLimit, Budget: cfg.CostBudget}
	if lrdb != nil {
		lcfg.Redis = lrdb
	}
	deps.RequestLimits = server.NewRequestLimits(lcfg, log)
	if answerFallback != nil {
		deps.AnswerLimitsDegraded = answerFallback.Degraded
	}
	if lcfg.Enabled() {
		off := func(set bool, v fmt.Stringer) string {
			if !set {
				return "off"
			}
			return v.String()
		}
		log.Info("request limits",
			slog.String("rate", off(lcfg.Rate.Events > 0, lcfg.Rate)),
			slog.String("global_rate", off(lcfg.Global.Events > 0, lcfg.Global)),
			slog.String("cost_budget", off(lcfg.Budget.Size > 0, lcfg.Budget)),
			slog.Bool("redis", lcfg.Redis != nil))
	}
	if cfg.PersistedQueries != "" {
		deps.Trusted, err = protect.NewTrusted(cfg.PersistedQueries, cfg.PersistedOnly, log)
		if err != nil {
			return fmt.Errorf("ASKGATE_PERSISTED_QUERIES: %w", err)
		}
		wctx, stopWatching := context.WithCancel(ctx)
		watching := deps.Trusted.WatchSIGHUP(wctx)
		defer func() { stopWatching(); <-watching }()
	}
	if deps.Development && secret != "" {
		deps.DevToken, err = auth.Mint([]byte(secret), auth.MintClaims{
			Subject: devUser, Name: "Dev User", Email: "dev@example.com",
			Scope: auth.ScopeRead + " " + auth.ScopeWrite, TTL: 30 * 24 * time.Hour,
			Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		})
		if err != nil {
			return err
		}
	}

	if cfg.DebugAddr != "" {
		dbg, err := startDebug(ctx, cfg.DebugAddr)
		if err != nil {
			return fmt.Errorf("ASKGATE_DEBUG_ADDR: %w", err)
		}
		defer dbg.Close()
		log.Info("profiler listening", slog.String("addr", cfg.DebugAddr))
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ASKGATE_ADDR: %w", err)
	}
	// Requests do not inherit ctx: a signal starts a graceful shutdown
	// that lets them end, rather than cancelling them all at once.
	baseCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	handler := server.NewServer(deps)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
	}
	url := "http://" + displayAddr(ln.Addr())
	log.Info("askgate listening", slog.String("addr", ln.Addr().String()), slog.String("mode", cfg.Mode))
	if deps.Development {
		fmt.Fprintf(stdout, "askgate is running (development mode).\n  GraphiQL: %s/\n  GraphQL:  %s/graphql\n", url, url)
		if deps.DevToken != "" {
			fmt.Fprintf(stdout, "  Token:    %s\n", deps.DevToken)
		}
	} else {
		fmt.Fprintf(stdout, "askgate is running: %s/graphql\n", url)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		gen.Shutdown(sctx)
		return err
	case <-ctx.Done():
	}
	return shutdown(log, cfg.ShutdownTimeout, srv, handler, gen, cancelRequests, errc)
}

// shutdown stops the server gracefully within timeout: it stops accepting
// connections and new questions, lets running answers finish for two
// thirds of the time (saving the rest as interrupted), closes WebSockets
// with 1001 and server-sent event streams once their subscribers have had
// the answers' last events, and waits for the remaining requests.
func shutdown(log *slog.Logger, timeout time.Duration, srv *http.Server, handler *server.Server, gen *answers.Manager, cancelRequests context.CancelFunc, errc <-chan error) error {
	log.Info("shutting down", slog.Duration("timeout", timeout), slog.Int("answers_running", gen.Running()))
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Shutdown(sctx) }() // stops accepting at once
	grace, cancelGrace := context.WithTimeout(sctx, timeout*2/3)
	defer cancelGrace()
	if err := gen.Shutdown(grace); err != nil {
		log.Warn("answers still running at the end of the grace period were saved as interrupted")
	}
	if err := handler.Shutdown(sctx); err != nil {
		log.Warn("subscriptions did not all end in time", slog.String("error", err.Error()))
	}
	cancelRequests()
	if err := <-httpDone; err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// displayAddr turns a listen address into one a browser can open.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}

// startDebug serves net/http/pprof on its own listener, apart from the
// public routes, for operators investigating CPU or memory use.
func startDebug(ctx context.Context, addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// redisPinger reports whether Redis answers, for /readyz.
type redisPinger struct{ c *redis.Client }

func (p redisPinger) Ping(ctx context.Context) error { return p.c.Ping(ctx).Err() }

// answerLimits returns the per-user limits of asking: concurrent answers
// and LLM tokens per day (nil when off), on Redis when rdb is set (with
// the in-process limits as a fallback while it does not answer; the
// Fallback is returned, to be closed at the end).
func answerLimits(cfg *config, rdb *redis.Client, log *slog.Logger) (limits.Concurrency, limits.TokenQuota, *limits.Fallback) {
	var slots limits.Concurrency
	var tokens limits.TokenQuota
	var fb *limits.Fallback
	if rdb != nil {
		fb = limits.NewFallback(limits.FallbackOptions{Logger: log})
	}
	if n := cfg.MaxConcurrentAnswers; n > 0 {
		slots = limits.NewLocalConcurrency(n)
		if fb != nil {
			slots = fb.Concurrency(limits.NewRedisConcurrency(rdb, n, limits.RedisOptions{}), slots)
		}
	}
	if n := cfg.LLMTokenBudget; n > 0 {
		tokens = limits.NewLocalTokenQuota(n, limits.LocalOptions{})
		if fb != nil {
			tokens = fb.TokenQuota(limits.NewRedisTokenQuota(rdb, n, limits.RedisOptions{}), tokens)
		}
	}
	return slots, tokens, fb
}

// answerCache returns the answer cache (nil when ASKGATE_ANSWER_CACHE_TTL
// is 0): in Redis when rdb is set, so that every instance shares it (rdb
// gives up when a call's context does: a slow Redis delays an ask by
// answercache.DefaultRedisTimeout at most, then counts as a miss), in
// process otherwise.
func answerCache(cfg *config, rdb *redis.Client, log *slog.Logger) answercache.Cache {
	if cfg.AnswerCacheTTL <= 0 {
		return nil
	}
	log.Info("answer cache", slog.Duration("ttl", cfg.AnswerCacheTTL), slog.Bool("redis", rdb != nil))
	if rdb != nil {
		return answercache.NewRedis(rdb, answercache.RedisOptions{TTL: cfg.AnswerCacheTTL})
	}
	return answercache.NewMemory(answercache.MemoryOptions{TTL: cfg.AnswerCacheTTL})
}
