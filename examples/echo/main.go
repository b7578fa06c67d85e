// Command echo is a single-node Tandem example on Echo v4 (examples/echo5 is
// the same on Echo v5): a home page showing the
// user, a cart and flash messages, login (ID regeneration), logout
// (invalidation), and a JSON view of the session.
//
//	go run ./examples/echo -addr 127.0.0.1:8081
//
// Set TANDEM_COOKIE_HASH_KEY (at least 32 bytes) and TANDEM_COOKIE_BLOCK_KEY
// (16, 24 or 32 bytes), hex or base64, to keep sessions valid across
// restarts and on every node behind a balancer (the same keys everywhere);
// without them, keys that only this process knows are generated at start.
// Every route that changes the session is a POST.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/echosession"
)

func main() {
	if err := run(); err != nil {
		slog.Error("exiting", "err", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	keys, err := loadKeys(log)
	if err != nil {
		return err
	}
	m, err := core.NewManager(core.Config{Keys: keys, Logger: log})
	if err != nil {
		return err
	}
	defer m.Close()

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover()) // before the session middleware: a panic commits nothing
	e.Use(echosession.Middleware(m))
	routes(e)

	srv := &http.Server{Addr: *addr, Handler: e, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", "http://"+*addr)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// loadKeys reads the cookie keys from TANDEM_COOKIE_HASH_KEY and
// TANDEM_COOKIE_BLOCK_KEY, hex or base64, as examples/node does. Without
// them it generates keys that only this process knows.
func loadKeys(log *slog.Logger) ([]core.KeyPair, error) {
	hashS, blockS := os.Getenv("TANDEM_COOKIE_HASH_KEY"), os.Getenv("TANDEM_COOKIE_BLOCK_KEY")
	if hashS == "" && blockS == "" {
		k := core.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
		_, _ = rand.Read(k.Hash)
		_, _ = rand.Read(k.Block)
		log.Warn("TANDEM_COOKIE_HASH_KEY and TANDEM_COOKIE_BLOCK_KEY not set: generated cookie keys that only this process knows. " +
			"No other process can read its cookies: after a restart, or on another node behind your balancer (a failover), every user starts a new session. " +
			"Set both, the same on every node (openssl rand -hex 32).")
		return []core.KeyPair{k}, nil
	}
	hash, err := decodeKey(hashS)
	if err != nil {
		return nil, fmt.Errorf("TANDEM_COOKIE_HASH_KEY: %w", err)
	}
	block, err := decodeKey(blockS)
	if err != nil {
		return nil, fmt.Errorf("TANDEM_COOKIE_BLOCK_KEY: %w", err)
	}
	return []core.KeyPair{{Hash: hash, Block: block}}, nil // NewManager checks the sizes
}

// decodeKey decodes a key in hex or, failing that, base64.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("not set")
	}
	if b, err := hex.DecodeString(s); err == nil {
		return b, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, rerr := base64.RawStdEncoding.DecodeString(s); rerr == nil {
			return b, nil
		}
		return nil, fmt.Errorf("neither hex nor base64: %w", err)
	}
	return b, nil
}

var page = template.Must(template.New("home").Parse(`<!doctype html>
<title>Tandem on Echo</title>
{{range .Flashes}}<p><mark>{{.}}</mark></p>{{end}}
{{if .User}}<p>Signed in as <b>{{.User}}</b>.</p>
<form method="post" action="/logout"><button>Log out</button></form>
{{else}}<form method="post" action="/login"><input name="user" placeholder="name"> <button>Log in</button></form>
{{end}}
<h2>Cart</h2>
<ul>{{range .Cart}}<li>{{.}}</li>{{else}}<li>empty</li>{{end}}</ul>
<form method="post" action="/cart/add"><input name="item" placeholder="item"> <button>Add</button></form>
<p><a href="/api/session">/api/session</a></p>
`))

// view is what the home page and /api/session show.
type view struct {
	User    string   `json:"user"`
	Cart    []string `json:"cart"`
	Flashes []string `json:"-"`
	New     bool     `json:"new"`
}

func load(s *core.Session) (view, error) {
	user, _, err := core.Get[string](s, "user")
	if err != nil {
		return view{}, err
	}
	cart, _, err := core.Get[[]string](s, "cart")
	if err != nil {
		return view{}, err
	}
	if cart == nil {
		cart = []string{}
	}
	return view{User: user, Cart: cart, New: s.IsNew()}, nil
}

// param reads a short, non-empty form or query value.
func param(c echo.Context, name string) (string, bool) {
	v := c.Request().FormValue(name)
	return v, v != "" && len(v) <= 64
}

// sessionError answers a failed session write: 413 for a limit, 500 else.
func sessionError(err error) error {
	code := http.StatusInternalServerError
	if errors.Is(err, core.ErrValueTooLarge) || errors.Is(err, core.ErrSessionTooLarge) || errors.Is(err, core.ErrTooManyAttributes) {
		code = http.StatusRequestEntityTooLarge
	}
	return echo.NewHTTPError(code).SetInternal(err)
}

func routes(e *echo.Echo) {
	e.GET("/", func(c echo.Context) error {
		s := echosession.Get(c)
		v, err := load(s)
		if err != nil {
			return sessionError(err)
		}
		v.Flashes = s.Flashes()
		c.Response().Header().Set("Content-Type", "text/html; charset=utf-8")
		c.Response().WriteHeader(http.StatusOK)
		return page.Execute(c.Response(), v)
	})
	login := func(c echo.Context) error {
		user, ok := param(c, "user")
		if !ok {
			return echo.NewHTTPError(http.StatusBadRequest, "user: 1 to 64 characters")
		}
		s := echosession.Get(c)
		s.Regenerate() // a new ID at login, against session fixation
		if err := s.Set("user", user); err != nil {
			return sessionError(err)
		}
		if err := s.AddFlash("welcome"); err != nil {
			return sessionError(err)
		}
		return c.Redirect(http.StatusSeeOther, "/")
	}
	e.POST("/login", login)
	logout := func(c echo.Context) error {
		s := echosession.Get(c)
		s.Invalidate()
		// The flash starts a new, anonymous session.
		if err := s.AddFlash("bye"); err != nil {
			return sessionError(err)
		}
		return c.Redirect(http.StatusSeeOther, "/")
	}
	e.POST("/logout", logout)
	add := func(c echo.Context) error {
		item, ok := param(c, "item")
		if !ok {
			return echo.NewHTTPError(http.StatusBadRequest, "item: 1 to 64 characters")
		}
		s := echosession.Get(c)
		cart, _, err := core.Get[[]string](s, "cart")
		if err == nil {
			err = s.Set("cart", append(cart, item))
		}
		if err != nil {
			return sessionError(err)
		}
		return c.Redirect(http.StatusSeeOther, "/")
	}
	e.POST("/cart/add", add)
	e.GET("/api/session", func(c echo.Context) error {
		v, err := load(echosession.Get(c))
		if err != nil {
			return sessionError(err)
		}
		return c.JSON(http.StatusOK, v)
	})
}
