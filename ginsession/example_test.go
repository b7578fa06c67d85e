package ginsession_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"

	"github.com/gin-gonic/gin"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/ginsession"
)

// A visit counter and a login that regenerates the session ID, behind a
// real server and a browser-like client.
func Example() {
	key := core.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	_, _ = rand.Read(key.Hash)
	_, _ = rand.Read(key.Block)
	m, err := core.NewManager(core.Config{Keys: []core.KeyPair{key}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(ginsession.Middleware(m))
	r.POST("/visit", func(c *gin.Context) {
		s := ginsession.Get(c)
		n, _, _ := core.Get[int](s, "visits")
		if err := s.Set("visits", n+1); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		user, _, _ := core.Get[string](s, "user")
		c.String(http.StatusOK, "visit %d, user %q", n+1, user)
	})
	r.POST("/login", func(c *gin.Context) {
		s := ginsession.Get(c)
		s.Regenerate() // new ID at login; the visits stay
		if err := s.Set("user", c.Query("user")); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, "welcome %s", c.Query("user"))
	})

	srv := httptest.NewServer(r)
	defer srv.Close()
	client := srv.Client()
	client.Jar, _ = cookiejar.New(nil)

	do := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%s %s: %s (new cookie: %v)\n", method, path, body, len(resp.Cookies()) > 0)
	}
	do("POST", "/visit")
	do("POST", "/visit")
	do("POST", "/login?user=ann")
	do("POST", "/visit")
	fmt.Println("sessions held:", m.Len())
	// Output:
	// POST /visit: visit 1, user "" (new cookie: true)
	// POST /visit: visit 2, user "" (new cookie: false)
	// POST /login?user=ann: welcome ann (new cookie: true)
	// POST /visit: visit 3, user "ann" (new cookie: false)
	// sessions held: 1
}
