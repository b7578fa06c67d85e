// Command peerapp serves the load driver's benchmark routes with one of the
// session libraries Tandem is compared with, so that bench/load can drive
// them exactly as it drives Tandem's demo node (internal/nodeapp):
//
//	GET /bench/read?k=       read one string attribute (default key "k")
//	GET /bench/write?k=&v=   set attribute k to the string v
//	GET /bench/get           every attribute, as a JSON object of strings
//	GET /healthz             no session
//
// Variants (-variant):
//
//	nosession          the same Gin app without any session (the ceiling)
//	gincontrib-cookie  github.com/gin-contrib/sessions, cookie store
//	gincontrib-redis   github.com/gin-contrib/sessions, Redis store (boj/redistore)
//	scs-mem            github.com/alexedwards/scs/v2, memstore
//	scs-redis          github.com/alexedwards/scs/v2, redisstore (redigo)
//
// The app listens on -addr, or on the listener inherited as file
// descriptor -listen-fd (the load driver passes one, so there is no race
// for a free port). It stops on SIGTERM or SIGINT.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/gin-contrib/sessions"
	"github.com/gin-contrib/sessions/cookie"
	gcredis "github.com/gin-contrib/sessions/redis"
	"github.com/gin-gonic/gin"
	"github.com/gomodule/redigo/redis"
	gsessions "github.com/gorilla/sessions"
)

// Variants lists the -variant values.
var Variants = []string{"nosession", "gincontrib-cookie", "gincontrib-redis", "scs-mem", "scs-redis"}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "peerapp:", err)
		os.Exit(1)
	}
}

func run() error {
	variant := flag.String("variant", "nosession", fmt.Sprint("session library: ", Variants))
	addr := flag.String("addr", "127.0.0.1:0", "listen address (ignored with -listen-fd)")
	fd := flag.Int("listen-fd", 0, "inherited listener's file descriptor (0: listen on -addr)")
	redisAddr := flag.String("redis", "", "Redis address host:port (Redis variants)")
	id := flag.String("id", "p1", "node name, sent in the X-Bench-Node header")
	verbose := flag.Bool("v", false, "log the session libraries' errors")
	flag.Parse()
	gin.SetMode(gin.ReleaseMode)
	if !*verbose {
		// gin-contrib/sessions logs every failed load through slog.
		slog.SetDefault(slog.New(slog.DiscardHandler))
	}

	h, err := handler(*variant, *redisAddr, *id)
	if err != nil {
		return err
	}
	var ln net.Listener
	if *fd > 0 {
		ln, err = net.FileListener(os.NewFile(uintptr(*fd), "listener"))
	} else {
		ln, err = net.Listen("tcp", *addr)
	}
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("peerapp %s listening on %s\n", *variant, ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// keys are fixed and known to every node of one variant, as they would be
// in production (from a secret store).
var (
	hashKey  = bytes.Repeat([]byte("h"), 32)
	blockKey = bytes.Repeat([]byte("b"), 32)
)

// store is what the routes need of a session library: read, write, list.
type store interface {
	get(c *gin.Context, k string) (string, error)
	set(c *gin.Context, k, v string) error
	all(c *gin.Context) (map[string]string, error)
}

func handler(variant, redisAddr, id string) (http.Handler, error) {
	r := gin.New()
	// The same middleware as Tandem's node app: recovery and a node header.
	r.Use(gin.Recovery(), func(c *gin.Context) {
		c.Header("X-Bench-Node", id)
		c.Next()
	})
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok %s\n", id) })
	var (
		st  store
		out http.Handler = r
	)
	switch variant {
	case "nosession":
		st = noStore{}
	case "gincontrib-cookie":
		r.Use(sessions.Sessions("gsession", cookie.NewStore(hashKey, blockKey)))
		st = ginContrib{}
	case "gincontrib-redis":
		if redisAddr == "" {
			return nil, errors.New("-redis is required")
		}
		rs, err := gcredis.NewStore(256, "tcp", redisAddr, "", "", hashKey, blockKey)
		if err != nil {
			return nil, fmt.Errorf("redis store: %w", err)
		}
		r.Use(sessions.Sessions("gsession", rs))
		st = ginContrib{}
	case "scs-mem", "scs-redis":
		sm := scs.New()
		if variant == "scs-mem" {
			sm.Store = memstore.New()
		} else {
			if redisAddr == "" {
				return nil, errors.New("-redis is required")
			}
			sm.Store = redisstore.New(redisPool(redisAddr))
		}
		sm.ErrorFunc = func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		st = scsStore{sm}
		out = sm.LoadAndSave(r) // scs's net/http middleware around the engine
	default:
		return nil, fmt.Errorf("unknown variant %q (want one of %v)", variant, Variants)
	}
	fail := func(c *gin.Context, err error) { c.String(http.StatusInternalServerError, "%s\n", err) }
	r.GET("/bench/read", func(c *gin.Context) {
		v, err := st.get(c, c.DefaultQuery("k", "k"))
		if err != nil {
			fail(c, err)
			return
		}
		c.String(http.StatusOK, "%s", v)
	})
	r.GET("/bench/write", func(c *gin.Context) {
		k := c.Query("k")
		if k == "" || len(k) > 128 {
			c.String(http.StatusBadRequest, "k: 1 to 128 characters\n")
			return
		}
		if err := st.set(c, k, c.Query("v")); err != nil {
			fail(c, err)
			return
		}
		c.String(http.StatusOK, "ok\n")
	})
	r.GET("/bench/get", func(c *gin.Context) {
		m, err := st.all(c)
		if err != nil {
			fail(c, err)
			return
		}
		c.Header("Cache-Control", "no-store")
		c.JSON(http.StatusOK, m)
	})
	return out, nil
}

func redisPool(addr string) *redis.Pool {
	return &redis.Pool{
		MaxIdle:     256,
		IdleTimeout: 4 * time.Minute,
		Dial: func() (redis.Conn, error) {
			return redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second),
				redis.DialReadTimeout(5*time.Second), redis.DialWriteTimeout(5*time.Second))
		},
	}
}

// noStore is the ceiling: no session at all.
type noStore struct{}

func (noStore) get(*gin.Context, string) (string, error)    { return "", nil }
func (noStore) set(*gin.Context, string, string) error      { return nil }
func (noStore) all(*gin.Context) (map[string]string, error) { return map[string]string{}, nil }

// ginContrib is github.com/gin-contrib/sessions with any store.
type ginContrib struct{}

func (ginContrib) get(c *gin.Context, k string) (string, error) {
	v, _ := sessions.Default(c).Get(k).(string)
	return v, nil
}

func (ginContrib) set(c *gin.Context, k, v string) error {
	s := sessions.Default(c)
	s.Set(k, v)
	return s.Save()
}

func (ginContrib) all(c *gin.Context) (map[string]string, error) {
	out := map[string]string{}
	gs, ok := sessions.Default(c).(interface{ Session() *gsessions.Session })
	if !ok {
		return nil, errors.New("gin-contrib session does not expose its values")
	}
	for k, v := range gs.Session().Values {
		ks, ok1 := k.(string)
		vs, ok2 := v.(string)
		if ok1 && ok2 {
			out[ks] = vs
		}
	}
	return out, nil
}

// scsStore is github.com/alexedwards/scs/v2 with any store.
type scsStore struct{ sm *scs.SessionManager }

func (s scsStore) get(c *gin.Context, k string) (string, error) {
	return s.sm.GetString(c.Request.Context(), k), nil
}

func (s scsStore) set(c *gin.Context, k, v string) error {
	s.sm.Put(c.Request.Context(), k, v)
	return nil
}

func (s scsStore) all(c *gin.Context) (map[string]string, error) {
	ctx := c.Request.Context()
	keys := s.sm.Keys(ctx)
	sort.Strings(keys)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[k] = s.sm.GetString(ctx, k)
	}
	return out, nil
}
