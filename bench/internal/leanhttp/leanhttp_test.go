package leanhttp

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestConn(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/len":
			w.Header().Set("X-Node", "n1")
			w.Write([]byte("hello " + r.Header.Get("Cookie")))
		case "/chunked":
			w.Write([]byte(strings.Repeat("a", 100)))
			w.(http.Flusher).Flush()
			w.Write([]byte(strings.Repeat("b", 5000)))
		case "/cookie":
			http.SetCookie(w, &http.Cookie{Name: "s", Value: "v1", Path: "/", HttpOnly: true})
			http.SetCookie(w, &http.Cookie{Name: "old", Value: "", MaxAge: -1})
			w.WriteHeader(http.StatusNoContent)
		case "/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	c := &Conn{Addr: addr, Header: "x-node"}
	defer c.Close()

	resp, err := c.Do(AppendGET(nil, addr, "/len", "a=1; b=2"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != "hello a=1; b=2" || resp.Header != "n1" {
		t.Fatalf("/len: %d %q header %q", resp.Status, resp.Body, resp.Header)
	}
	resp, err = c.Do(AppendGET(nil, addr, "/chunked", ""))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || len(resp.Body) != 5100 || resp.Body[0] != 'a' || resp.Body[5099] != 'b' {
		t.Fatalf("/chunked: %d, %d bytes", resp.Status, len(resp.Body))
	}
	resp, err = c.Do(AppendGET(nil, addr, "/cookie", ""))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 204 || len(resp.Cookies) != 2 ||
		resp.Cookies[0] != (Cookie{Name: "s", Value: "v1"}) || resp.Cookies[1] != (Cookie{Name: "old", Delete: true}) {
		t.Fatalf("/cookie: %d %+v", resp.Status, resp.Cookies)
	}
	resp, err = c.Do(AppendGET(nil, addr, "/nope", ""))
	if err != nil || resp.Status != 404 {
		t.Fatalf("/nope: %v %v", resp, err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 4 keep-alive requests, want 1", n)
	}
	resp, err = c.Do(AppendGET(nil, addr, "/close", ""))
	if err != nil || string(resp.Body) != "bye" {
		t.Fatalf("/close: %v %v", resp, err)
	}
	if _, err := c.Do(AppendGET(nil, addr, "/len", "")); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after Connection: close, want 2", n)
	}
}

func TestMalformed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1024)
			c.Read(buf)
			c.Write([]byte("SMTP ready\r\n\r\n"))
			c.Close()
		}
	}()
	c := &Conn{Addr: ln.Addr().String()}
	if _, err := c.Do(AppendGET(nil, "x", "/", "")); err == nil {
		t.Fatal("no error for a non-HTTP answer")
	}
	if c.c != nil {
		t.Fatal("connection kept after an error")
	}
}
