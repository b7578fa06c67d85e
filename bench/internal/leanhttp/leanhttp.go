// Package leanhttp is the benchmark's HTTP/1.1 client: one keep-alive
// connection per Conn, requests written from pre-built bytes, and responses
// parsed only as far as a load driver needs (status, Content-Length or
// chunked body, Set-Cookie, Connection and one chosen header).
//
// It exists so that the client is not the bottleneck of a benchmark: on the
// 2-core machine the figures come from, Go's net/http client capped a
// no-session Gin app at about 23k requests/s, where this client reaches
// 50-60k. It is not a general HTTP client: no redirects, no proxies, no TLS,
// no compression, no request bodies.
package leanhttp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// ErrMalformed reports a response this client cannot parse.
var ErrMalformed = errors.New("leanhttp: malformed response")

// MaxBody bounds a response body; a larger one fails the request.
const MaxBody = 16 << 20

// Cookie is one Set-Cookie of a response: its name and value, and whether it
// deletes the cookie (Max-Age zero or negative, or an Expires in the past
// given together with an empty value).
type Cookie struct {
	Name, Value string
	Delete      bool
}

// Response is the parsed part of a response. It is reused by the next Do on
// the same Conn: copy what must outlive it.
type Response struct {
	// Status is the status code.
	Status int
	// Body is the response body.
	Body []byte
	// Cookies are the response's Set-Cookie headers.
	Cookies []Cookie
	// Header is the value of the header named by Conn.Header, if present.
	Header string
}

// Conn is one keep-alive HTTP/1.1 connection to one address. It dials
// lazily and redials after an error. A Conn is not safe for concurrent use.
type Conn struct {
	// Addr is the host:port dialed.
	Addr string
	// Header names one response header whose value Response.Header
	// reports ("" for none). Compared case-insensitively.
	Header string
	// Timeout bounds each request (dial, write and read). Default 10 s.
	Timeout time.Duration

	c    net.Conn
	br   *bufio.Reader
	resp Response
	body []byte
}

// Close closes the connection; the next Do redials.
func (c *Conn) Close() error {
	if c.c == nil {
		return nil
	}
	err := c.c.Close()
	c.c, c.br = nil, nil
	return err
}

func (c *Conn) dial(deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", c.Addr)
	if err != nil {
		return err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	c.c = nc
	c.br = bufio.NewReaderSize(nc, 16<<10)
	return nil
}

// Do writes req, a complete HTTP/1.1 request without a body (see AppendGET),
// and reads the response. On any error the connection is closed, so the
// next call starts afresh; a request that failed may or may not have reached
// the server.
func (c *Conn) Do(req []byte) (*Response, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	deadline := time.Now().Add(timeout)
	if c.c == nil {
		if err := c.dial(deadline); err != nil {
			return nil, err
		}
	}
	if err := c.c.SetDeadline(deadline); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	keep, err := c.read()
	if err != nil {
		c.Close()
		return nil, err
	}
	if !keep {
		c.Close()
	}
	return &c.resp, nil
}

// read parses one response into c.resp and reports whether the connection
// stays open.
func (c *Conn) read() (keep bool, err error) {
	r := &c.resp
	r.Status, r.Cookies, r.Header, r.Body = 0, r.Cookies[:0], "", nil
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return false, fmt.Errorf("%w: status line %q", ErrMalformed, line)
	}
	st, ok := atoi(line[9:12])
	if !ok {
		return false, fmt.Errorf("%w: status line %q", ErrMalformed, line)
	}
	r.Status = st
	keep = line[7] == '1'
	length, chunked := -1, false
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false, fmt.Errorf("%w: header %q", ErrMalformed, line)
		}
		name, val := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case equalFold(name, "content-length"):
			n, ok := atoi(val)
			if !ok || n > MaxBody {
				return false, fmt.Errorf("%w: content-length %q", ErrMalformed, val)
			}
			length = n
		case equalFold(name, "set-cookie"):
			r.Cookies = append(r.Cookies, parseSetCookie(val))
		case equalFold(name, "transfer-encoding"):
			chunked = bytes.Contains(bytes.ToLower(val), []byte("chunked"))
		case equalFold(name, "connection"):
			if equalFold(val, "close") {
				keep = false
			}
		case c.Header != "" && equalFold(name, c.Header):
			r.Header = string(val)
		}
	}
	c.body = c.body[:0]
	switch {
	case r.Status == 204 || r.Status == 304 || r.Status/100 == 1:
	case chunked:
		if err := c.readChunked(); err != nil {
			return false, err
		}
	case length >= 0:
		c.body = grow(c.body, length)
		if _, err := io.ReadFull(c.br, c.body); err != nil {
			return false, err
		}
	default: // the body runs to the end of the connection
		buf := bytes.NewBuffer(c.body)
		if _, err := io.Copy(buf, io.LimitReader(c.br, MaxBody+1)); err != nil {
			return false, err
		}
		c.body = buf.Bytes()
		if len(c.body) > MaxBody {
			return false, fmt.Errorf("%w: body over %d bytes", ErrMalformed, MaxBody)
		}
		keep = false
	}
	r.Body = c.body
	return keep, nil
}

func (c *Conn) readChunked() error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = trimCRLF(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 32)
		if err != nil || len(c.body)+int(n) > MaxBody {
			return fmt.Errorf("%w: chunk size %q", ErrMalformed, line)
		}
		if n == 0 {
			for { // trailers, then the empty line
				line, err := c.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(trimCRLF(line)) == 0 {
					return nil
				}
			}
		}
		start := len(c.body)
		c.body = grow(c.body, start+int(n))
		if _, err := io.ReadFull(c.br, c.body[start:]); err != nil {
			return err
		}
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(trimCRLF(line)) != 0 {
			return fmt.Errorf("%w: chunk not followed by CRLF", ErrMalformed)
		}
	}
}

// AppendGET appends a GET request for target (path and query, already
// escaped) with the given Host and Cookie header values ("" omits the Cookie
// header) to dst.
func AppendGET(dst []byte, host, target, cookie string) []byte {
	dst = append(dst, "GET "...)
	dst = append(dst, target...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUser-Agent: tandem-bench\r\n"...)
	if cookie != "" {
		dst = append(dst, "Cookie: "...)
		dst = append(dst, cookie...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// parseSetCookie reads the name, value and deletion of one Set-Cookie value.
func parseSetCookie(v []byte) Cookie {
	pair, attrs, _ := bytes.Cut(v, []byte(";"))
	name, val, _ := bytes.Cut(pair, []byte("="))
	ck := Cookie{Name: string(bytes.TrimSpace(name)), Value: string(bytes.Trim(bytes.TrimSpace(val), `"`))}
	for len(attrs) > 0 {
		var a []byte
		a, attrs, _ = bytes.Cut(attrs, []byte(";"))
		k, av, _ := bytes.Cut(bytes.TrimSpace(a), []byte("="))
		if equalFold(k, "max-age") {
			if n, err := strconv.Atoi(string(av)); err == nil && n <= 0 {
				ck.Delete = true
			}
		}
	}
	if ck.Value == "" {
		ck.Delete = true
	}
	return ck
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n, max(n, 2*cap(b)))
	copy(nb, b)
	return nb
}

func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// equalFold reports whether b equals the lower-case ASCII s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
