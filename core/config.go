package core

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// KeyPair is one cookie key pair. The first pair in Config.Keys signs and
// encrypts new cookies; every pair decodes, so keys rotate by putting a new
// pair first and dropping the old one once its cookies have expired.
type KeyPair struct {
	// Hash authenticates the cookie (HMAC-SHA256). At least 32 bytes.
	Hash []byte
	// Block encrypts the cookie (AES). 16, 24 or 32 bytes; 32 selects AES-256.
	Block []byte
}

// CookieConfig sets the session cookie's attributes.
type CookieConfig struct {
	// Name of the cookie. Default "tandem".
	Name string
	// Path of the cookie. Default "/".
	Path string
	// Domain of the cookie. Default "" (the request's host only).
	Domain string
	// Secure sends the cookie over HTTPS only. Default false, so that plain
	// HTTP works in development; set it in production.
	Secure bool
	// DisableHTTPOnly lets scripts read the cookie. Default false: the cookie
	// is HttpOnly.
	DisableHTTPOnly bool
	// SameSite of the cookie. Default http.SameSiteLaxMode.
	SameSite http.SameSite
	// Partitioned sets the Partitioned attribute (CHIPS). Default false.
	Partitioned bool
	// RouteName names a second, plain cookie holding the ID of the node that
	// owns the session, for a load balancer to route by (sticky sessions
	// that follow failovers): it is written with the session cookie
	// whenever the owner changes. Default "" (no route cookie);
	// DefaultRouteCookie is the conventional name, for the application and
	// the balancer's configuration to share. It carries no secret; a forged
	// value only sends the request to another node, which fetches the
	// session.
	RouteName string
	// RouteValue, when set, gives the route cookie's value for the node ID
	// of the session's owner, for balancers that route on a value of their
	// own: EnvoyRoute writes the value of Envoy's stateful-session cookie
	// (the base64 of the owner's upstream address), so that Envoy, Istio
	// and Gateway API implementations built on Envoy route straight to the
	// owner. An answer of "" deletes the route cookie (the balancer picks
	// a node, which fetches the session). The answer must be a valid
	// cookie value. It is called on the response path whenever the route
	// cookie is written: keep it a lookup. Requires RouteName. Default
	// nil: the value is the owner's node ID.
	RouteValue func(owner string) string
	// Lazy sends a new session's cookie only when the session was written
	// before the response header went out. Default false: every new
	// session's cookie goes out with the header, so a value set after the
	// handler started writing the body is still found on the next request;
	// the price is a Set-Cookie on every response to a client without a
	// session.
	Lazy bool
	// Persist makes the cookie outlive the browser session: it gets a
	// Max-Age equal to Config.Lifetime. Default false (a browser-session
	// cookie).
	Persist bool
}

// Limits bound what one session and one node hold. A write that breaks a
// limit fails with the matching error; nothing is dropped silently.
type Limits struct {
	// MaxSessions is the most sessions this node owns at once. At the
	// limit, a new session takes the place of a first-visit one (see
	// Config.FirstVisitIdleTimeout); when there is none, creating it fails
	// with ErrNodeFull. Default 1,000,000.
	MaxSessions int
	// MaxAttributes is the most keys one session holds; more fails with
	// ErrTooManyAttributes. Default 256.
	MaxAttributes int
	// MaxValueSize is the largest encoded value, in bytes; larger fails
	// with ErrValueTooLarge. Default 256 KiB.
	MaxValueSize int
	// MaxSessionSize is the most bytes of keys plus values one session
	// holds; more fails with ErrSessionTooLarge. Default 1 MiB.
	MaxSessionSize int
	// MaxSessionsPerUser is the most sessions one user (Session.SetUser)
	// holds across the cluster; at the limit, SetUser applies UserLimit.
	// Default 0: no limit.
	MaxSessionsPerUser int
	// UserLimit is what SetUser does when the user holds
	// MaxSessionsPerUser sessions already. Default LimitReject.
	UserLimit UserLimitPolicy
}

// Config configures a Manager. The zero value of every field but Keys is a
// working default.
type Config struct {
	// Keys sign and encrypt the session cookie; the first pair is used for
	// new cookies, all pairs decode. Required. Every node of a cluster (and
	// every process behind one balancer) needs the same keys: a node that
	// cannot decode a cookie another node issued starts a fresh session, so
	// a failover would log the user out. Load them from the environment or
	// a secret store; keys generated at start are for a single process.
	Keys []KeyPair
	// Cookie sets the cookie's attributes. See CookieConfig for defaults.
	Cookie CookieConfig
	// IdleTimeout ends a session that saw no request for this long.
	// Default 30 minutes.
	IdleTimeout time.Duration
	// FirstVisitIdleTimeout ends sooner a session that no request came
	// back with after the one that created it: a visitor who stored
	// something once (a cart item, a CSRF token) and left, or a flood of
	// cookie-less requests. Such first-visit sessions are also the ones
	// evicted, roughly oldest first, when the node holds MaxSessions, so
	// that returning users and new logins keep working under a flood.
	// Default 10 minutes (at most IdleTimeout).
	FirstVisitIdleTimeout time.Duration
	// Lifetime ends a session this long after it was created, however busy
	// it is. Default 24 hours.
	Lifetime time.Duration
	// RegenerateGrace is how long, after Session.Regenerate, a request that
	// still brings the old ID (a page's parallel requests sent before the
	// login's response arrived) is served the new session instead of a
	// fresh, empty one, on any node: the node it reaches fetches the new
	// session if needed. Such a request never gets the new cookie (the
	// login's response carries it), so after the window the old ID is dead
	// for everyone. The price: whoever holds the old cookie (an attacker
	// who fixed the session ID before the login) is served the logged-in
	// session for that long; set it short, or negative where that matters.
	// A request with the old ID that reaches neither the owner nor its
	// buddy after the owner died gets a fresh session. Default 10 seconds;
	// negative turns it off (the old ID dies at the commit).
	RegenerateGrace time.Duration
	// Codec encodes attribute values. Default JSONCodec.
	Codec Codec
	// Limits bound sessions and nodes. See Limits for defaults.
	Limits Limits
	// Replicator receives every committed change. Default nil: a single
	// node, nothing replicated.
	Replicator Replicator
	// Events are hooks called when a session is created, regenerated,
	// invalidated, expires or is taken over by this node; see Events for
	// when and where each runs. Default: none.
	Events Events
	// Logger receives the manager's log records. Default: discarded.
	Logger *slog.Logger
	// ErrorHandler writes the response when a commit fails before the
	// header went out. Default DefaultErrorHandler; the status it answers
	// for each error is in the README's table "Errors and status codes".
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// SweepInterval is how often expired sessions are removed from memory.
	// An expired session is never served, swept or not. Default 1 second.
	SweepInterval time.Duration
	// Now is the clock. Default time.Now. Tests inject their own.
	Now func() time.Time
}

// DefaultRouteCookie is the conventional name of the route cookie
// (CookieConfig.RouteName): set RouteName to it, and route on it in the
// load balancer (nginx's $cookie_tandem_node, HAProxy's
// req.cook(tandem_node)).
const DefaultRouteCookie = "tandem_node"

const (
	defaultCookieName            = "tandem"
	defaultIdleTimeout           = 30 * time.Minute
	defaultFirstVisitIdleTimeout = 10 * time.Minute
	defaultLifetime              = 24 * time.Hour
	defaultMaxSessions           = 1_000_000
	defaultMaxAttributes         = 256
	defaultMaxValueSize          = 256 << 10
	defaultMaxSessionSize        = 1 << 20
	defaultSweepInterval         = time.Second
	maxKeyLen                    = 1024
)

// withDefaults validates cfg and fills in its defaults.
func (cfg Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return cfg, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if len(cfg.Keys) == 0 {
		return bad("Keys: at least one key pair is required")
	}
	for i, k := range cfg.Keys {
		if len(k.Hash) < 32 {
			return bad("Keys[%d].Hash: %d bytes, need at least 32", i, len(k.Hash))
		}
		switch len(k.Block) {
		case 16, 24, 32:
		default:
			return bad("Keys[%d].Block: %d bytes, need 16, 24 or 32", i, len(k.Block))
		}
	}
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"IdleTimeout", &cfg.IdleTimeout, defaultIdleTimeout},
		{"FirstVisitIdleTimeout", &cfg.FirstVisitIdleTimeout, defaultFirstVisitIdleTimeout},
		{"Lifetime", &cfg.Lifetime, defaultLifetime},
		{"SweepInterval", &cfg.SweepInterval, defaultSweepInterval},
	}
	if cfg.RegenerateGrace == 0 {
		cfg.RegenerateGrace = defaultRegenerateGrace
	}
	for _, d := range durations {
		if *d.d < 0 {
			return bad("%s: negative (%v)", d.name, *d.d)
		}
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	limits := []struct {
		name string
		n    *int
		def  int
	}{
		{"Limits.MaxSessions", &cfg.Limits.MaxSessions, defaultMaxSessions},
		{"Limits.MaxAttributes", &cfg.Limits.MaxAttributes, defaultMaxAttributes},
		{"Limits.MaxValueSize", &cfg.Limits.MaxValueSize, defaultMaxValueSize},
		{"Limits.MaxSessionSize", &cfg.Limits.MaxSessionSize, defaultMaxSessionSize},
	}
	for _, l := range limits {
		if *l.n < 0 {
			return bad("%s: negative (%d)", l.name, *l.n)
		}
		if *l.n == 0 {
			*l.n = l.def
		}
	}
	if cfg.Limits.MaxSessionsPerUser < 0 {
		return bad("Limits.MaxSessionsPerUser: negative (%d)", cfg.Limits.MaxSessionsPerUser)
	}
	if cfg.Limits.UserLimit > LimitEndOldest {
		return bad("Limits.UserLimit: unknown policy %d", cfg.Limits.UserLimit)
	}
	c := &cfg.Cookie
	if c.Name == "" {
		c.Name = defaultCookieName
	}
	if !validCookieName(c.Name) {
		return bad("Cookie.Name: %q is not a valid cookie name", c.Name)
	}
	if c.RouteName != "" && (!validCookieName(c.RouteName) || c.RouteName == c.Name) {
		return bad("Cookie.RouteName: %q is not a valid cookie name, or equals Name", c.RouteName)
	}
	if c.RouteValue != nil && c.RouteName == "" {
		return bad("Cookie.RouteValue requires Cookie.RouteName")
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.SameSite == 0 {
		c.SameSite = http.SameSiteLaxMode
	}
	if c.SameSite == http.SameSiteNoneMode && !c.Secure {
		return bad("Cookie.SameSite: None requires Cookie.Secure (browsers reject it otherwise)")
	}
	if c.Partitioned && !c.Secure {
		return bad("Cookie.Partitioned requires Cookie.Secure")
	}
	if cfg.Codec == nil {
		cfg.Codec = JSONCodec{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = DefaultErrorHandler
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, nil
}

func validCookieName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == '=' || c == ';' || c == ',' || c == '"' || c == '\\' {
			return false
		}
	}
	return name != ""
}
