package chaos

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/labstack/echo/v4"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/echosession"
	"github.com/tandemsession/tandem/ginsession"
)

// Response headers of the node app: what the checker learns of each
// answer besides its body. They are set before the session commits, so a
// commit that fails (503) answers without them.
const (
	hdrNode    = "X-Chaos-Node"    // the serving node
	hdrSession = "X-Chaos-Session" // the session ID after the request
	hdrNew     = "X-Chaos-New"     // "1": the request brought no valid session (Session.IsNew() at load)
	hdrOwner   = "X-Chaos-Owner"   // node.Location(): this node, the owner
	hdrBackup  = "X-Chaos-Backup"  // node.Location(): its buddy, the backup
)

// answer is the JSON body of the session routes.
type answer struct {
	// Version: for a write, the session version its commit created
	// (exact: recorded by versionTap); for a read, the version held just
	// after it (approximate: a concurrent request may have committed
	// since).
	Version uint64            `json:"version,omitempty"`
	Values  map[string]string `json:"values,omitempty"`
}

// versionTap wraps the node as the manager's Replicator and remembers the
// version of the commit that first carried each (session, key, value):
// values are unique per write, so a handler learns the exact version its
// own commit created. It forwards everything to the node (the embedded
// *buddy.Node keeps core's optional interfaces: Toucher, Binder, Locator,
// Fetcher).
type versionTap struct {
	*buddy.Node
	mu sync.Mutex
	m  map[tapKey]uint64
}

type tapKey struct{ id, key, value string }

// tapMax bounds the entries kept; a handler takes its own at once, so only
// values that arrived in full copies (fetches) stay.
const tapMax = 1 << 18

func newVersionTap(n *buddy.Node) *versionTap {
	return &versionTap{Node: n, m: make(map[tapKey]uint64)}
}

// Replicate implements core.Replicator.
func (t *versionTap) Replicate(c *core.Change) core.Ack {
	if !c.Removed && len(c.Set) > 0 {
		t.mu.Lock()
		if len(t.m) > tapMax {
			clear(t.m)
		}
		for _, a := range c.Set {
			k := tapKey{c.ID, a.Key, string(a.Value)}
			if _, ok := t.m[k]; !ok {
				t.m[k] = c.Version
			}
		}
		t.mu.Unlock()
	}
	return t.Node.Replicate(c)
}

// take returns and forgets the version that wrote value v (a string,
// JSON-encoded by core's default codec) to key k of session id.
func (t *versionTap) take(id, k, v string) uint64 {
	enc, err := json.Marshal(v)
	if err != nil {
		return 0
	}
	key := tapKey{id, k, string(enc)}
	t.mu.Lock()
	defer t.mu.Unlock()
	ver := t.m[key]
	delete(t.m, key)
	return ver
}

// app is one node's application: the same four session routes on Gin or
// on Echo.
type app struct {
	id   string
	node *buddy.Node
	tap  *versionTap
	mgr  *core.Manager
}

// headers sets the checker's headers; call it before the commit.
func (a *app) headers(h http.Header, s *core.Session, isNew bool, withID bool) {
	h.Set(hdrNode, a.id)
	if withID {
		h.Set(hdrSession, s.ID())
	}
	if isNew {
		h.Set(hdrNew, "1")
	} else {
		h.Set(hdrNew, "0")
	}
	owner, backup := a.node.Location()
	h.Set(hdrOwner, owner)
	h.Set(hdrBackup, backup)
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
}

// readAll returns every string attribute of s.
func readAll(s *core.Session) map[string]string {
	out := map[string]string{}
	for _, k := range s.Keys() {
		if v, ok, err := core.Get[string](s, k); err == nil && ok {
			out[k] = v
		}
	}
	return out
}

func (a *app) version(s *core.Session) uint64 {
	if c, ok := a.mgr.Snapshot(s.ID()); ok {
		return c.Version
	}
	return 0
}

func body(v answer) []byte {
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

func statsHandler(node *buddy.Node, mgr *core.Manager) func() []byte {
	return func() []byte {
		b, _ := json.Marshal(nodeStats{Stats: node.Stats(), Sessions: mgr.Len()})
		return b
	}
}

// nodeStats is the answer of GET /stats.
type nodeStats struct {
	Stats    buddy.Stats `json:"stats"`
	Sessions int         `json:"sessions"`
}

// ginHandler is the Gin variant, through ginsession.
func (a *app) ginHandler() http.Handler {
	r := gin.New()
	r.Use(gin.Recovery())
	stats := statsHandler(a.node, a.mgr)
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok %s\n", a.id) })
	r.GET("/stats", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", stats()) })
	s := r.Group("/", ginsession.Middleware(a.mgr))
	// commit writes the header (the session commits then) and the body.
	commit := func(c *gin.Context, v func() answer) {
		c.Status(http.StatusOK)
		c.Writer.WriteHeaderNow()
		_, _ = c.Writer.Write(body(v()))
	}
	s.POST("/set", func(c *gin.Context) {
		sess := ginsession.Get(c)
		isNew := sess.IsNew()
		k, v := c.Query("k"), c.Query("v")
		if err := sess.Set(k, v); err != nil {
			c.String(http.StatusBadRequest, "%v\n", err)
			return
		}
		a.headers(c.Writer.Header(), sess, isNew, true)
		commit(c, func() answer { return answer{Version: a.tap.take(sess.ID(), k, v)} })
	})
	s.GET("/get", func(c *gin.Context) {
		sess := ginsession.Get(c)
		isNew := sess.IsNew()
		vals := readAll(sess)
		a.headers(c.Writer.Header(), sess, isNew, true)
		commit(c, func() answer { return answer{Version: a.version(sess), Values: vals} })
	})
	s.POST("/login", func(c *gin.Context) {
		sess := ginsession.Get(c)
		isNew := sess.IsNew()
		user := c.Query("user")
		sess.Regenerate()
		if err := sess.Set("user", user); err != nil {
			c.String(http.StatusBadRequest, "%v\n", err)
			return
		}
		a.headers(c.Writer.Header(), sess, isNew, true)
		commit(c, func() answer { return answer{Version: a.tap.take(sess.ID(), "user", user)} })
	})
	s.POST("/logout", func(c *gin.Context) {
		sess := ginsession.Get(c)
		isNew := sess.IsNew()
		sess.Invalidate()
		a.headers(c.Writer.Header(), sess, isNew, false)
		commit(c, func() answer { return answer{} })
	})
	return r
}

// echoHandler is the Echo v4 variant, through echosession.
func (a *app) echoHandler() http.Handler {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	stats := statsHandler(a.node, a.mgr)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok "+a.id+"\n") })
	e.GET("/stats", func(c echo.Context) error { return c.Blob(http.StatusOK, "application/json", stats()) })
	g := e.Group("", echosession.Middleware(a.mgr))
	commit := func(c echo.Context, v func() answer) error {
		res := c.Response()
		res.WriteHeader(http.StatusOK) // the session commits in the Before hook
		_, _ = res.Write(body(v()))
		return nil
	}
	g.POST("/set", func(c echo.Context) error {
		sess := echosession.Get(c)
		isNew := sess.IsNew()
		k, v := c.QueryParam("k"), c.QueryParam("v")
		if err := sess.Set(k, v); err != nil {
			return c.String(http.StatusBadRequest, err.Error()+"\n")
		}
		a.headers(c.Response().Header(), sess, isNew, true)
		return commit(c, func() answer { return answer{Version: a.tap.take(sess.ID(), k, v)} })
	})
	g.GET("/get", func(c echo.Context) error {
		sess := echosession.Get(c)
		isNew := sess.IsNew()
		vals := readAll(sess)
		a.headers(c.Response().Header(), sess, isNew, true)
		return commit(c, func() answer { return answer{Version: a.version(sess), Values: vals} })
	})
	g.POST("/login", func(c echo.Context) error {
		sess := echosession.Get(c)
		isNew := sess.IsNew()
		user := c.QueryParam("user")
		sess.Regenerate()
		if err := sess.Set("user", user); err != nil {
			return c.String(http.StatusBadRequest, err.Error()+"\n")
		}
		a.headers(c.Response().Header(), sess, isNew, true)
		return commit(c, func() answer { return answer{Version: a.tap.take(sess.ID(), "user", user)} })
	})
	g.POST("/logout", func(c echo.Context) error {
		sess := echosession.Get(c)
		isNew := sess.IsNew()
		sess.Invalidate()
		a.headers(c.Response().Header(), sess, isNew, false)
		return commit(c, func() answer { return answer{} })
	})
	return e
}
