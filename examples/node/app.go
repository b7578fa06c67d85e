package node

import (
	"errors"
	"html/template"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
)

// The demo application: replace this file with yours. Every route that
// changes the session is a POST: a balancer or an HTTP client may replay a
// GET that failed in flight (Go's http.Transport does on a dead keep-alive
// connection), and a replayed write would apply twice.

// app registers the application's routes behind the session middleware.
func (n *Node) app(s *gin.RouterGroup) {
	s.GET("/", n.home)
	s.POST("/login", n.login)
	s.POST("/logout", n.logout)
	s.POST("/cart/add", n.cartAdd)
	s.GET("/api/session", n.session)
}

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

// info reads what the page and /api/session show.
func (n *Node) info(s *core.Session) (SessionInfo, error) {
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
	_, backup := n.buddy.Location()
	v := SessionInfo{Node: n.id, Backup: backup, User: user, Cart: cart, New: s.IsNew()}
	if !v.New {
		v.Owner = n.id
		if snap, ok := n.mgr.Snapshot(s.ID()); ok {
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
func (n *Node) sessionError(c *gin.Context, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, core.ErrValueTooLarge) || errors.Is(err, core.ErrSessionTooLarge) || errors.Is(err, core.ErrTooManyAttributes) {
		code = http.StatusRequestEntityTooLarge
	} else {
		n.log.Warn("session error", "node", n.id, "path", c.Request.URL.Path, "err", err)
	}
	c.String(code, "%s\n", http.StatusText(code))
}

// pageView is what the home page template renders.
type pageView struct {
	SessionInfo
	Flashes []string
}

func (n *Node) home(c *gin.Context) {
	s := ginsession.Get(c)
	v, err := n.info(s)
	if err != nil {
		n.sessionError(c, err)
		return
	}
	pv := pageView{SessionInfo: v, Flashes: s.Flashes()}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Header("Cache-Control", "no-store")
	c.Status(http.StatusOK)
	if err := page.Execute(c.Writer, pv); err != nil {
		n.log.Debug("page not written", "err", err)
	}
}

func (n *Node) login(c *gin.Context) {
	user, ok := param(c, "user", 64)
	if !ok {
		c.String(http.StatusBadRequest, "user: 1 to 64 characters\n")
		return
	}
	s := ginsession.Get(c)
	s.Regenerate() // a new ID at login, against session fixation
	if err := s.Set("user", user); err != nil {
		n.sessionError(c, err)
		return
	}
	if err := s.AddFlash("Welcome, " + user + "!"); err != nil {
		n.sessionError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/")
}

func (n *Node) logout(c *gin.Context) {
	s := ginsession.Get(c)
	s.Invalidate()
	// The flash starts a new, anonymous session.
	if err := s.AddFlash("Signed out."); err != nil {
		n.sessionError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/")
}

func (n *Node) cartAdd(c *gin.Context) {
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
		n.sessionError(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/")
}

func (n *Node) session(c *gin.Context) {
	v, err := n.info(ginsession.Get(c))
	if err != nil {
		n.sessionError(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, v)
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
