package core_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/tandemsession/tandem/core"
)

// A net/http application: the middleware loads the session and commits its
// changes with the response header.
func ExampleManager_Middleware() {
	m, err := core.NewManager(core.Config{
		Keys: []core.KeyPair{{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 32)}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /visit", func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		n, _, err := core.Get[int](s, "visits")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := s.Set("visits", n+1); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "visit %d", n+1)
	})
	srv := httptest.NewServer(m.Middleware(mux))
	defer srv.Close()

	var cookie *http.Cookie
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/visit", nil) // a write: POST
		if cookie != nil {
			req.AddCookie(cookie)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(res.Body)
		res.Body.Close()
		for _, c := range res.Cookies() {
			cookie = c
		}
		fmt.Println(body.String())
	}
	// Output:
	// visit 1
	// visit 2
	// visit 3
}

// Values are encoded when set and decoded into a fresh value when read.
func ExampleGet() {
	type cart struct{ Items []string }
	m, _ := core.NewManager(core.Config{
		Keys: []core.KeyPair{{Hash: bytes.Repeat([]byte("h"), 32), Block: bytes.Repeat([]byte("b"), 16)}},
	})
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		_ = s.Set("cart", cart{Items: []string{"tea", "milk"}})
		c, ok, err := core.Get[cart](s, "cart")
		fmt.Println(c.Items, ok, err)
		_, ok, _ = core.Get[string](s, "missing")
		fmt.Println(ok)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	// Output:
	// [tea milk] true <nil>
	// false
}
