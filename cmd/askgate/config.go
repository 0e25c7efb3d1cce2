package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/auth"
	"askgate/internal/limits"
	"askgate/internal/protect"
)

// devSecret signs tokens in development mode when no secret is configured.
// It is public (it is in the source), so production mode refuses it.
const devSecret = "askgate-development-secret-do-not-use-in-production"

// defaultSystemPrompt is the system prompt when none is configured.
const defaultSystemPrompt = "You are a helpful assistant. Answer clearly and concisely."

// Modes of operation.
const (
	modeDevelopment = "development"
	modeProduction  = "production"
)

// config is the server's configuration, read from ASKGATE_* variables and
// overridden by flags.
type config struct {
	Addr               string
	Mode               string
	DatabaseURL        string
	UserServiceURL     string
	UserServiceTimeout time.Duration
	UserCacheTTL       time.Duration
	UserCacheStale     time.Duration
	JWTSecret          string
	JWTJWKSURL         string
	JWTIssuer          string
	JWTAudience        string
	LogLevel           string
	ShutdownTimeout    time.Duration
	LoaderWait         time.Duration
	DebugAddr          string
	RequestTimeout     time.Duration
	RedisURL           string
	PersistedQueries   string
	PersistedOnly      bool
	Limits             protect.Limits
	// RateLimit, GlobalRateLimit and CostBudget are off when zero.
	RateLimit       limits.Rate
	GlobalRateLimit limits.Rate
	CostBudget      limits.Bucket

	LLMBaseURL           string
	LLMAPIKey            string
	LLMModel             string
	LLMSystemPrompt      string
	LLMHistoryTokens     int
	LLMMaxTokens         int
	LLMFirstTokenTimeout time.Duration
	LLMIdleTimeout       time.Duration
	AnswerRetention      time.Duration
	// AnswerCacheTTL is how long an answer to a first question is served
	// again from the answer cache; zero turns the cache off.
	AnswerCacheTTL       time.Duration
	LeaseTTL             time.Duration
	MaxConcurrentAnswers int
	LLMTokenBudget       int
	WSInitTimeout        time.Duration
	WSMaxSubscriptions   int
	AllowedOrigins       []string
}

// setting ties a configuration field to its variable and flag.
type setting struct {
	env, flag, def, usage string
	set                   func(c *config, v string) error
}

func str(dst func(*config) *string) func(*config, string) error {
	return func(c *config, v string) error { *dst(c) = v; return nil }
}

func duration(dst func(*config) *time.Duration) func(*config, string) error {
	return func(c *config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("%q is not a duration such as 2s or 500ms", v)
		}
		*dst(c) = d
		return nil
	}
}

func integer(dst func(*config) *int) func(*config, string) error {
	return func(c *config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a whole number ≥ 0", v)
		}
		*dst(c) = n
		return nil
	}
}

func list(dst func(*config) *[]string) func(*config, string) error {
	return func(c *config, v string) error {
		var out []string
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				out = append(out, item)
			}
		}
		*dst(c) = out
		return nil
	}
}

func boolean(dst func(*config) *bool) func(*config, string) error {
	return func(c *config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*dst(c) = b
		return nil
	}
}

func rate(dst func(*config) *limits.Rate) func(*config, string) error {
	return func(c *config, v string) error {
		if strings.TrimSpace(v) == "" {
			*dst(c) = limits.Rate{}
			return nil
		}
		r, err := limits.ParseRate(v)
		if err != nil {
			return err
		}
		*dst(c) = r
		return nil
	}
}

func budget(dst func(*config) *limits.Bucket) func(*config, string) error {
	return func(c *config, v string) error {
		if strings.TrimSpace(v) == "" {
			*dst(c) = limits.Bucket{}
			return nil
		}
		b, err := limits.ParseBudget(v)
		if err != nil {
			return err
		}
		*dst(c) = b
		return nil
	}
}

// settings lists every setting of askgate serve.
var settings = []setting{
	{"ASKGATE_ADDR", "addr", ":8080", "listen address", str(func(c *config) *string { return &c.Addr })},
	{"ASKGATE_MODE", "mode", modeDevelopment, "development or production", str(func(c *config) *string { return &c.Mode })},
	{"ASKGATE_DATABASE_URL", "database-url", "sqlite:data/askgate.db", "postgres://… or a SQLite path (sqlite:PATH or PATH)", str(func(c *config) *string { return &c.DatabaseURL })},
	{"ASKGATE_USER_SERVICE_URL", "user-service-url", "", "base URL of the user service; empty = built-in users", str(func(c *config) *string { return &c.UserServiceURL })},
	{"ASKGATE_USER_SERVICE_TIMEOUT", "user-service-timeout", "2s", "timeout of one user service call", duration(func(c *config) *time.Duration { return &c.UserServiceTimeout })},
	{"ASKGATE_USER_CACHE_TTL", "user-cache-ttl", "30s", "with a user service: how long a profile is served from memory without asking it again; 0 = no cache", duration(func(c *config) *time.Duration { return &c.UserCacheTTL })},
	{"ASKGATE_USER_CACHE_STALE", "user-cache-stale", "5m", "with the user cache: how long after its TTL a profile is still served, at once while it is refreshed in the background, or while the user service fails", duration(func(c *config) *time.Duration { return &c.UserCacheStale })},
	{"ASKGATE_JWT_SECRET", "jwt-secret", "", "HS256 secret (at least 32 bytes); development: a fixed dev secret", str(func(c *config) *string { return &c.JWTSecret })},
	{"ASKGATE_JWT_JWKS_URL", "jwt-jwks-url", "", "JWKS URL for RS256/ES256/EdDSA tokens", str(func(c *config) *string { return &c.JWTJWKSURL })},
	{"ASKGATE_JWT_ISSUER", "jwt-issuer", "", "required iss claim, when set", str(func(c *config) *string { return &c.JWTIssuer })},
	{"ASKGATE_JWT_AUDIENCE", "jwt-audience", "", "required aud claim, when set", str(func(c *config) *string { return &c.JWTAudience })},
	{"ASKGATE_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", str(func(c *config) *string { return &c.LogLevel })},
	{"ASKGATE_SHUTDOWN_TIMEOUT", "shutdown-timeout", "15s", "how long a graceful shutdown may take", duration(func(c *config) *time.Duration { return &c.ShutdownTimeout })},
	{"ASKGATE_LOADER_WAIT", "loader-wait", "1ms", "dataloader batch window", duration(func(c *config) *time.Duration { return &c.LoaderWait })},
	{"ASKGATE_REDIS_URL", "redis-url", "", "redis://… for state shared by every instance (persisted queries, answer streams, leases, the answer cache); empty = in-process", str(func(c *config) *string { return &c.RedisURL })},
	{"ASKGATE_PERSISTED_QUERIES", "persisted-queries", "", "path of a trusted-documents manifest (Apollo's or a sha256→document map); reloaded on SIGHUP", str(func(c *config) *string { return &c.PersistedQueries })},
	{"ASKGATE_PERSISTED_ONLY", "persisted-only", "false", "true: run only operations in the manifest", boolean(func(c *config) *bool { return &c.PersistedOnly })},
	{"ASKGATE_MAX_DEPTH", "max-depth", "10", "deepest operation (MAX_DEPTH_LIMIT)", integer(func(c *config) *int { return &c.Limits.MaxDepth })},
	{"ASKGATE_MAX_ALIASES", "max-aliases", "15", "most aliases in an operation (MAX_ALIASES_LIMIT)", integer(func(c *config) *int { return &c.Limits.MaxAliases })},
	{"ASKGATE_MAX_ROOT_FIELDS", "max-root-fields", "10", "most root fields in an operation (MAX_ROOT_FIELDS_LIMIT)", integer(func(c *config) *int { return &c.Limits.MaxRootFields })},
	{"ASKGATE_MAX_DIRECTIVES", "max-directives", "50", "most directives in an operation (MAX_DIRECTIVES_LIMIT)", integer(func(c *config) *int { return &c.Limits.MaxDirectives })},
	{"ASKGATE_MAX_TOKENS", "max-tokens", "5000", "most lexical tokens in a document (MAX_TOKENS_LIMIT)", integer(func(c *config) *int { return &c.Limits.MaxTokens })},
	{"ASKGATE_MAX_DOCUMENT_BYTES", "max-document-bytes", "102400", "largest document (MAX_DOCUMENT_SIZE_LIMIT)", integer(func(c *config) *int { return &c.Limits.MaxDocumentBytes })},
	{"ASKGATE_MAX_COST", "max-cost", "5000", "highest query cost of one operation (COST_LIMIT)", integer(func(c *config) *int { return &c.Limits.MaxCost })},
	{"ASKGATE_RATE_LIMIT", "rate-limit", "", "requests per user, <count>/<s|m|h> such as 600/m (RATE_LIMITED); empty = off", rate(func(c *config) *limits.Rate { return &c.RateLimit })},
	{"ASKGATE_GLOBAL_RATE_LIMIT", "global-rate-limit", "", "requests of all users together, <count>/<s|m|h> such as 6000/s (RATE_LIMITED); empty = off", rate(func(c *config) *limits.Rate { return &c.GlobalRateLimit })},
	{"ASKGATE_COST_BUDGET", "cost-budget", "", "query cost budget per user, <size>/<restore per second> such as 2000/100 (RATE_LIMITED); empty = off", budget(func(c *config) *limits.Bucket { return &c.CostBudget })},
	{"ASKGATE_REQUEST_TIMEOUT", "request-timeout", "30s", "longest a query or mutation may run (subscriptions are exempt)", duration(func(c *config) *time.Duration { return &c.RequestTimeout })},
	{"ASKGATE_LLM_BASE_URL", "llm-base-url", "", "OpenAI-compatible base URL (…/v1); empty = the built-in demo backend", str(func(c *config) *string { return &c.LLMBaseURL })},
	{"ASKGATE_LLM_API_KEY", "llm-api-key", "", "bearer key for the LLM backend", str(func(c *config) *string { return &c.LLMAPIKey })},
	{"ASKGATE_LLM_MODEL", "llm-model", "", "default model id; empty = the backend's first model", str(func(c *config) *string { return &c.LLMModel })},
	{"ASKGATE_LLM_SYSTEM_PROMPT", "llm-system-prompt", defaultSystemPrompt, "system prompt sent first with every question; empty = none", str(func(c *config) *string { return &c.LLMSystemPrompt })},
	{"ASKGATE_LLM_HISTORY_TOKENS", "llm-history-tokens", "3000", "earlier questions and answers sent with a question, in estimated tokens", integer(func(c *config) *int { return &c.LLMHistoryTokens })},
	{"ASKGATE_LLM_MAX_TOKENS", "llm-max-tokens", "0", "longest answer in tokens; 0 = the backend's default", integer(func(c *config) *int { return &c.LLMMaxTokens })},
	{"ASKGATE_LLM_FIRST_TOKEN_TIMEOUT", "llm-first-token-timeout", "30s", "longest wait for an answer's first token", duration(func(c *config) *time.Duration { return &c.LLMFirstTokenTimeout })},
	{"ASKGATE_LLM_IDLE_TIMEOUT", "llm-idle-timeout", "30s", "longest wait between two tokens of an answer", duration(func(c *config) *time.Duration { return &c.LLMIdleTimeout })},
	{"ASKGATE_ANSWER_RETENTION", "answer-retention", "10m", "how long a finished answer's events stay replayable", duration(func(c *config) *time.Duration { return &c.AnswerRetention })},
	{"ASKGATE_ANSWER_CACHE_TTL", "answer-cache-ttl", "0", "how long the answer to a conversation's first question is served again, to anyone asking the same first question of the same model (in Redis when configured); 0 = no answer cache", duration(func(c *config) *time.Duration { return &c.AnswerCacheTTL })},
	{"ASKGATE_MAX_CONCURRENT_ANSWERS", "max-concurrent-answers", "3", "answers one user may have generating at once; 0 = no cap", integer(func(c *config) *int { return &c.MaxConcurrentAnswers })},
	{"ASKGATE_LLM_TOKEN_BUDGET", "llm-token-budget", "0", "LLM tokens per user per day (UTC); 0 = no budget", integer(func(c *config) *int { return &c.LLMTokenBudget })},
	{"ASKGATE_LEASE_TTL", "lease-ttl", "5s", "with Redis: how long an instance's hold on a running answer lasts; another instance finishes the answers of one silent for longer", duration(func(c *config) *time.Duration { return &c.LeaseTTL })},
	{"ASKGATE_WS_INIT_TIMEOUT", "ws-init-timeout", "3s", "time a WebSocket client has to send connection_init", duration(func(c *config) *time.Duration { return &c.WSInitTimeout })},
	{"ASKGATE_WS_MAX_SUBSCRIPTIONS", "ws-max-subscriptions", "20", "concurrent subscriptions per WebSocket connection", integer(func(c *config) *int { return &c.WSMaxSubscriptions })},
	{"ASKGATE_ALLOWED_ORIGINS", "allowed-origins", "", "comma-separated origins (https://app.example) allowed to open WebSockets; empty = same origin only", list(func(c *config) *[]string { return &c.AllowedOrigins })},
	{"ASKGATE_DEBUG_ADDR", "debug-addr", "", "listen address of the pprof profiler; empty = off (keep it private)", str(func(c *config) *string { return &c.DebugAddr })},
}

// parseConfig reads the settings from the environment, then from flags in
// args, and checks them. Every error names the variable at fault.
func parseConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (*config, error) {
	c := &config{}
	values := make(map[string]*string, len(settings))
	for _, s := range settings {
		v := s.def
		if e := getenv(s.env); e != "" {
			v = e
		}
		values[s.env] = fs.String(s.flag, v, s.usage+" ("+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range settings {
		if err := s.set(c, *values[s.env]); err != nil {
			return nil, fmt.Errorf("%s: %w", s.env, err)
		}
	}
	return c, c.check()
}

// check validates a configuration; production mode refuses insecure ones.
func (c *config) check() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("ASKGATE_ADDR: %q is not host:port", c.Addr)
	}
	if c.DebugAddr != "" {
		if _, _, err := net.SplitHostPort(c.DebugAddr); err != nil {
			return fmt.Errorf("ASKGATE_DEBUG_ADDR: %q is not host:port", c.DebugAddr)
		}
	}
	if c.Mode != modeDevelopment && c.Mode != modeProduction {
		return fmt.Errorf("ASKGATE_MODE: %q is neither development nor production", c.Mode)
	}
	if c.DatabaseURL == "" {
		return errors.New("ASKGATE_DATABASE_URL: must not be empty")
	}
	if err := checkHTTPURL(c.UserServiceURL); err != nil {
		return fmt.Errorf("ASKGATE_USER_SERVICE_URL: %w", err)
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			return fmt.Errorf("ASKGATE_REDIS_URL: %v", err)
		}
	}
	if c.PersistedOnly && c.PersistedQueries == "" {
		return errors.New("ASKGATE_PERSISTED_ONLY: needs a manifest in ASKGATE_PERSISTED_QUERIES")
	}
	if c.RequestTimeout == 0 {
		return errors.New("ASKGATE_REQUEST_TIMEOUT: must be positive")
	}
	if c.UserServiceTimeout == 0 {
		return errors.New("ASKGATE_USER_SERVICE_TIMEOUT: must be positive")
	}
	if err := checkHTTPURL(c.LLMBaseURL); err != nil {
		return fmt.Errorf("ASKGATE_LLM_BASE_URL: %w", err)
	}
	if c.LLMFirstTokenTimeout == 0 {
		return errors.New("ASKGATE_LLM_FIRST_TOKEN_TIMEOUT: must be positive")
	}
	if c.LLMIdleTimeout == 0 {
		return errors.New("ASKGATE_LLM_IDLE_TIMEOUT: must be positive")
	}
	if c.AnswerRetention == 0 {
		return errors.New("ASKGATE_ANSWER_RETENTION: must be positive")
	}
	if c.LeaseTTL < 300*time.Millisecond {
		return errors.New("ASKGATE_LEASE_TTL: must be at least 300ms")
	}
	if c.WSInitTimeout == 0 {
		return errors.New("ASKGATE_WS_INIT_TIMEOUT: must be positive")
	}
	if c.WSMaxSubscriptions == 0 {
		return errors.New("ASKGATE_WS_MAX_SUBSCRIPTIONS: must be positive")
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return fmt.Errorf("ASKGATE_ALLOWED_ORIGINS: %q is not an origin such as https://app.example.com", o)
		}
	}
	if err := checkHTTPURL(c.JWTJWKSURL); err != nil {
		return fmt.Errorf("ASKGATE_JWT_JWKS_URL: %w", err)
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < auth.MinSecretBytes {
		return fmt.Errorf("ASKGATE_JWT_SECRET: must be at least %d bytes long", auth.MinSecretBytes)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("ASKGATE_LOG_LEVEL: %q is not debug, info, warn or error", c.LogLevel)
	}
	if c.Mode == modeProduction {
		if c.JWTSecret == "" && c.JWTJWKSURL == "" {
			return errors.New("ASKGATE_JWT_SECRET: production mode needs a JWT secret or ASKGATE_JWT_JWKS_URL")
		}
		if c.JWTSecret == devSecret {
			return errors.New("ASKGATE_JWT_SECRET: production mode refuses the public development secret")
		}
	}
	return nil
}

// secret returns the HS256 secret in force: the configured one, or the
// development secret in development mode when neither a secret nor a JWKS
// URL is set.
func (c *config) secret() (s string, isDev bool) {
	if c.JWTSecret == "" && c.JWTJWKSURL == "" && c.Mode == modeDevelopment {
		return devSecret, true
	}
	return c.JWTSecret, false
}

// checkHTTPURL accepts "" or an absolute http(s) URL.
func checkHTTPURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}
