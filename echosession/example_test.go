package echosession_test

import (
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"

	"github.com/labstack/echo/v4"
	"github.com/tandemsession/tandem/core"
	"github.com/tandemsession/tandem/echosession"
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

	e := echo.New()
	e.Use(echosession.Middleware(m))
	e.POST("/visit", func(c echo.Context) error {
		s := echosession.Get(c)
		n, _, _ := core.Get[int](s, "visits")
		if err := s.Set("visits", n+1); err != nil {
			return err
		}
		user, _, _ := core.Get[string](s, "user")
		return c.String(http.StatusOK, fmt.Sprintf("visit %d, user %q", n+1, user))
	})
	e.POST("/login", func(c echo.Context) error {
		s := echosession.Get(c)
		s.Regenerate() // new ID at login; the visits stay
		if err := s.Set("user", c.QueryParam("user")); err != nil {
			return err
		}
		return c.String(http.StatusOK, "welcome "+c.QueryParam("user"))
	})

	srv := httptest.NewServer(e)
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
