package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// jar is one user's cookies, as a browser keeps them: every answer's
// Set-Cookie replaces or deletes them in the order answers arrive. It
// also remembers which session ID each session cookie value stands for
// (the answer that set it named it), so that the history knows what each
// request carried.
type jar struct {
	mu     sync.Mutex
	values map[string]string // cookie name -> value
	ids    map[string]string // session cookie value -> session ID
}

func newJar() *jar { return &jar{values: map[string]string{}, ids: map[string]string{}} }

// cookies is a snapshot of a jar, as one request sends it.
type cookies struct {
	session, route string
	id             string // the session ID the session cookie stands for
}

func (j *jar) snapshot() cookies {
	j.mu.Lock()
	defer j.mu.Unlock()
	s := j.values[sessionCookie]
	return cookies{session: s, route: j.values[routeCookie], id: j.ids[s]}
}

// update applies an answer's Set-Cookie headers; sessionID is the session
// the answer names.
func (j *jar) update(resp *http.Response, sessionID string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range resp.Cookies() {
		if c.Name != sessionCookie && c.Name != routeCookie {
			continue
		}
		if c.MaxAge < 0 || c.Value == "" {
			delete(j.values, c.Name)
			continue
		}
		j.values[c.Name] = c.Value
		if c.Name == sessionCookie && sessionID != "" {
			j.ids[c.Value] = sessionID
		}
	}
}

func (c cookies) header() string {
	var parts []string
	if c.session != "" {
		parts = append(parts, sessionCookie+"="+c.session)
	}
	if c.route != "" {
		parts = append(parts, routeCookie+"="+c.route)
	}
	return strings.Join(parts, "; ")
}

// request is what a user asks; the client turns it into one HTTP request.
type request struct {
	kind       string
	key, value string
}

func (r request) method() string {
	if r.kind == kindGet || r.kind == kindReplay {
		return http.MethodGet
	}
	return http.MethodPost
}

func (r request) path() string {
	switch r.kind {
	case kindSet:
		return "/set?" + url.Values{"k": {r.key}, "v": {r.value}}.Encode()
	case kindLogin:
		return "/login?" + url.Values{"user": {r.value}}.Encode()
	case kindLogout:
		return "/logout"
	}
	return "/get"
}

// newClient returns one user's HTTP client: its own connections
// (keep-alive), no cookie jar of Go's (the user keeps its own), no
// redirects.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// send performs one request of op to addr with the cookies ck and fills
// in the op's outcome. It updates j with the answer's cookies (j nil: the
// answer's cookies are dropped, as for a replay).
func send(ctx context.Context, cl *http.Client, rec *recorder, addr string, r request, ck cookies, j *jar, op *Op) {
	req, err := http.NewRequestWithContext(ctx, r.method(), "http://"+addr+r.path(), nil)
	if err != nil {
		op.Invoke, op.Return = rec.now(), rec.now()
		op.Outcome, op.Err, op.Detail = outcomeFail, errOther, err.Error()
		return
	}
	if h := ck.header(); h != "" {
		req.Header.Set("Cookie", h)
	}
	op.SentID = ck.id
	op.Invoke = rec.now()
	resp, err := cl.Do(req)
	if err != nil {
		op.Return = rec.now()
		op.Err, op.Detail = classifyErr(err), err.Error()
		op.Outcome = outcomeUnknown
		if op.Err == errRefused {
			op.Outcome = outcomeFail
		}
		return
	}
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	op.Return = rec.now()
	op.Status = resp.StatusCode
	h := resp.Header
	op.SessionID, op.New, op.ServedBy = h.Get(hdrSession), h.Get(hdrNew) == "1", h.Get(hdrNode)
	op.Owner, op.Backup = h.Get(hdrOwner), h.Get(hdrBackup)
	if j != nil {
		j.update(resp, op.SessionID)
	}
	op.Outcome = outcomeUnknown
	if rerr != nil {
		op.Err, op.Detail = classifyErr(rerr), rerr.Error()
		return
	}
	if resp.StatusCode != http.StatusOK {
		op.Detail = strings.TrimSpace(string(b[:min(len(b), 200)]))
		return
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil || op.ServedBy == "" {
		op.Err, op.Detail = errOther, "malformed answer: "+strings.TrimSpace(string(b[:min(len(b), 200)]))
		return
	}
	op.Outcome = outcomeOK
	op.Version, op.Values = a.Version, a.Values
}

// classifyErr names a transport error: refused (nothing was sent),
// timeout, reset (the connection broke after the request may have been
// sent), other.
func classifyErr(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return errReset
	}
	if strings.Contains(err.Error(), "server closed") || strings.Contains(err.Error(), "connection reset") {
		return errReset
	}
	return errOther
}
