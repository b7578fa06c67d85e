package nodeapp

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
)

// benchRoutes registers the load-test routes behind the session
// middleware. /bench/write is a POST, as every write through a balancer
// that retries must be; the GET form stays for the benchmark's load
// driver, which talks to the nodes without a retrying balancer and writes
// a key to a value, which applies the same when replayed.
func benchRoutes(s *gin.RouterGroup) {
	b := s.Group("/bench", func(c *gin.Context) {
		if ginsession.Get(c).IsNew() {
			c.Header(NewSessionHeader, "1")
		}
	})
	b.GET("/read", benchRead)
	b.POST("/write", benchWrite)
	b.GET("/write", benchWrite)
	b.GET("/get", benchGet)
}

// sessionError answers a failed session read or write: 413 for a limit,
// 500 for anything else.
func sessionError(c *gin.Context, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, core.ErrValueTooLarge) || errors.Is(err, core.ErrSessionTooLarge) || errors.Is(err, core.ErrTooManyAttributes) {
		code = http.StatusRequestEntityTooLarge
	}
	c.String(code, "%s\n", http.StatusText(code))
}

// benchRead reads one attribute, ?k= (default "k"), as a string.
func benchRead(c *gin.Context) {
	k := c.DefaultQuery("k", "k")
	v, _, err := core.Get[string](ginsession.Get(c), k)
	if err != nil {
		sessionError(c, err)
		return
	}
	c.String(http.StatusOK, "%s", v)
}

// benchWrite sets the attribute k to the string v, from the query or the
// form.
func benchWrite(c *gin.Context) {
	k := c.Request.FormValue("k")
	if k == "" || len(k) > 128 {
		c.String(http.StatusBadRequest, "k: 1 to 128 characters\n")
		return
	}
	v := c.Request.FormValue("v")
	if len(v) > 64<<10 {
		c.String(http.StatusBadRequest, "v: at most 64 KiB\n")
		return
	}
	if err := ginsession.Get(c).Set(k, v); err != nil {
		sessionError(c, err)
		return
	}
	c.String(http.StatusOK, "ok\n")
}

// benchGet answers every string attribute of the session as a JSON object.
func benchGet(c *gin.Context) {
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
