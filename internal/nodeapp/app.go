package nodeapp

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/buddy"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
)

// SessionInfo is the answer of GET /api/session.
type SessionInfo struct {
	// Node served the request.
	Node string `json:"node"`
	// Owner owns the session now ("" for a new, empty session).
	Owner string `json:"owner"`
	// Backup holds its copy (Owner's buddy; "" when the node runs alone).
	Backup string `json:"backup"`
	// User is the signed-in user, if any.
	User string `json:"user"`
	// Cart holds the items added.
	Cart []string `json:"cart"`
	// Version is the session's stored version (0 for a new session).
	Version uint64 `json:"version,omitempty"`
	// New reports that the request brought no valid session.
	New bool `json:"new"`
}

// StatsInfo is the answer of GET /api/stats.
type StatsInfo struct {
	// Node is the node's ID.
	Node string `json:"node"`
	// Sessions is the number of sessions the node owns.
	Sessions int `json:"sessions"`
	// Stats are the node's replication counters.
	Stats buddy.Stats `json:"stats"`
}

// app is one node's Gin application.
type app struct {
	id   string
	node *buddy.Node
	mgr  *core.Manager
	log  *slog.Logger
}

func (a *app) handler() http.Handler {
	r := gin.New()
	r.Use(gin.Recovery(), func(c *gin.Context) {
		c.Header(NodeHeader, a.id)
		c.Next()
	})
	// Routes without a session.
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok %s\n", a.id) })
	r.GET("/api/stats", func(c *gin.Context) {
		c.JSON(http.StatusOK, StatsInfo{Node: a.id, Sessions: a.mgr.Len(), Stats: a.node.Stats()})
	})

	s := r.Group("/", ginsession.Middleware(a.mgr))
	s.GET("/", a.home)
	s.POST("/login", a.login)
	s.POST("/logout", a.logout)
	s.POST("/cart/add", a.cartAdd)
	s.GET("/api/session", a.session)
	b := s.Group("/bench", func(c *gin.Context) {
		if ginsession.Get(c).IsNew() {
			c.Header(NewSessionHeader, "1")
		}
	})
	b.GET("/read", a.benchRead)
	b.GET("/write", a.benchWrite)
	b.GET("/get", a.benchGet)
	return r
}

// info reads what the page and /api/session show.
func (a *app) info(s *core.Session) (SessionInfo, error) {
	user, _, err := core.Get[string](s, "user")
	if err != nil {
		return SessionInfo{}, err
	}
	cart, _, err := core.Get[[]string](s, "cart")
	if err != nil {
		return SessionInfo{}, err
	}
	if cart == nil {
		cart = []string{}
	}
	_, backup := a.node.Location()
	v := SessionInfo{Node: a.id, Backup: backup, User: user, Cart: cart, New: s.IsNew()}
	if !v.New {
		v.Owner = a.id
		if snap, ok := a.mgr.Snapshot(s.ID()); ok {
			v.Version = snap.Version
		}
	}
	return v, nil
}

// param reads a short, non-empty form or query value.
func param(c *gin.Context, name string, maxLen int) (string, bool) {
	v := c.Request.FormValue(name)
	return v, v != "" && len(v) <= maxLen
}

// sessionError answers a failed session read or write: 413 for a limit,
// 500 for anything else.
func (a *app) sessionError(c *gin.Context, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, core.ErrValueTooLarge) || errors.Is(err, core.ErrSessionTooLarge) || errors.Is(err, core.ErrTooManyAttributes) {
		code = http.StatusRequestEntityTooLarge
	} else {
		a.log.Warn("session error", "node", a.id, "path", c.Request.URL.Path, "err", err)
	}
	c.String(code, "%s\n", http.StatusText(code))
}

// pageView is what the home page template renders.
type pageView struct {
	SessionInfo
	Flashes []string
}

func (a *app) home(c *gin.Context) {
	s := ginsession.Get(c)
	v, err := a.info(s)
	if err != nil {
		a.sessionError(c, err)
		return
	}
	pv := pageView{SessionInfo: v, Flashes: s.Flashes()}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
	if err := page.Execute(c.Writer, pv); err != nil {
		a.log.Debug("page not written", "err", err)
	}
}

func (a *app) login(c *gin.Context) {
	user, ok := param(c, "user", 64)
	if !ok {
		c.String(http.StatusBadRequest, "user: 1 to 64 characters\n")
		return
	}
	s := ginsession.Get(c)
	s.Regenerate() // a new ID at login, against session fixation
	if err := s.Set("user", user); err != nil {
		a.sessionError(c, err)
		return
	}
	if err := s.AddFlash("Welcome, " + user + "!"); err != nil {
		a.sessionError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/")
}

func (a *app) logout(c *gin.Context) {
	s := ginsession.Get(c)
	s.Invalidate()
	// The flash starts a new, anonymous session.
	if err := s.AddFlash("Signed out."); err != nil {
		a.sessionError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/")
}

func (a *app) cartAdd(c *gin.Context) {
	item, ok := param(c, "item", 64)
	if !ok {
		c.String(http.StatusBadRequest, "item: 1 to 64 characters\n")
		return
	}
	s := ginsession.Get(c)
	cart, _, err := core.Get[[]string](s, "cart")
	if err == nil {
		err = s.Set("cart", append(cart, item))
	}
	if err != nil {
		a.sessionError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/")
}

func (a *app) session(c *gin.Context) {
	v, err := a.info(ginsession.Get(c))
	if err != nil {
		a.sessionError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, v)
}

// benchRead reads one attribute, ?k= (default "k"), as a string.
func (a *app) benchRead(c *gin.Context) {
	k := c.DefaultQuery("k", "k")
	v, _, err := core.Get[string](ginsession.Get(c), k)
	if err != nil {
		a.sessionError(c, err)
		return
	}
	c.String(http.StatusOK, "%s", v)
}

// benchWrite sets the attribute ?k= to the string ?v=.
func (a *app) benchWrite(c *gin.Context) {
	k, ok := param(c, "k", 128)
	if !ok {
		c.String(http.StatusBadRequest, "k: 1 to 128 characters\n")
		return
	}
	v := c.Query("v")
	if len(v) > 64<<10 {
		c.String(http.StatusBadRequest, "v: at most 64 KiB\n")
		return
	}
	if err := ginsession.Get(c).Set(k, v); err != nil {
		a.sessionError(c, err)
		return
	}
	c.String(http.StatusOK, "ok\n")
}

// benchGet answers every string attribute of the session as a JSON object.
func (a *app) benchGet(c *gin.Context) {
	s := ginsession.Get(c)
	out := map[string]string{}
	for _, k := range s.Keys() {
		if v, ok, err := core.Get[string](s, k); err == nil && ok {
			out[k] = v
		}
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, out)
}

var page = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tandem cluster demo</title>
<style>
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f6fa;color:#1d2433}
main{max-width:560px;margin:32px auto;background:#fff;border-radius:10px;box-shadow:0 1px 4px #0002;padding:24px 28px}
h1{font-size:20px;margin:0 0 4px}
.where{color:#555;margin:0 0 16px}
.node{display:inline-block;padding:1px 8px;border-radius:10px;background:#e3ecff;color:#1f4fbf;font-weight:600}
.flash{background:#fff6d6;border:1px solid #f0d67a;padding:6px 10px;border-radius:6px}
ul{padding-left:20px}
input{padding:5px 8px;border:1px solid #bbc;border-radius:5px}
button{padding:5px 12px;border:0;border-radius:5px;background:#1f4fbf;color:#fff;cursor:pointer}
form{margin:8px 0}
footer{margin-top:16px;font-size:13px;color:#666}
</style></head><body><main>
<h1>Tandem cluster demo</h1>
<p class="where" id="where">served by node <span class="node" id="served-by">{{.Node}}</span>{{if .Backup}}, backup on node <span class="node" id="backup-on">{{.Backup}}</span>{{else}}, no backup node{{end}}{{if .Version}} &middot; session version {{.Version}}{{end}}</p>
{{range .Flashes}}<p class="flash">{{.}}</p>{{end}}
{{if .User}}<p>Signed in as <b id="user">{{.User}}</b>.</p>
<form method="post" action="/logout"><button id="logout">Log out</button></form>
{{else}}<form method="post" action="/login"><input name="user" id="user-input" placeholder="your name" required maxlength="64"> <button id="login">Log in</button></form>
{{end}}
<h2>Cart</h2>
<ul id="cart">{{range .Cart}}<li>{{.}}</li>{{else}}<li class="empty">empty</li>{{end}}</ul>
<form method="post" action="/cart/add"><input name="item" id="item-input" placeholder="item" required maxlength="64"> <button id="add">Add to cart</button></form>
<footer><a href="/api/session">/api/session</a> &middot; <a href="/dashboard">dashboard</a> (through the balancer)</footer>
</main></body></html>
`))
