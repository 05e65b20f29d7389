package httplimit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// start serves h within c on a loopback port and returns its address.
func start(t *testing.T, h http.Handler, c Config) (*Server, string) {
	t.Helper()
	s := New(h, c)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, l.Addr().String()
}

func health() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
}

// getHealth asks for /healthz on a new connection.
func getHealth(addr string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// dialMany opens n connections to addr that send nothing.
func dialMany(t *testing.T, addr string, n int) {
	t.Helper()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection: %v", err)
		}
		t.Cleanup(func() { c.Close() })
	}
}

// TestIdleConnectionsCapped checks that a thousand connections that send
// nothing neither hold more than the cap nor keep a health check from
// being answered.
func TestIdleConnectionsCapped(t *testing.T) {
	s, addr := start(t, health(), Config{MaxConns: 128, HeaderTimeout: time.Minute})
	dialMany(t, addr, 1000)
	begin := time.Now()
	if err := getHealth(addr, 10*time.Second); err != nil {
		t.Fatalf("health check behind 1,000 idle connections: %v", err)
	}
	t.Logf("answered in %v", time.Since(begin))
	if n := s.OpenConns(); n > 128 {
		t.Errorf("%d connections open, cap 128", n)
	}
}

// TestKeptAliveMakeRoom checks that connections kept alive after a request
// make room for a new client when the cap is reached, and that one in the
// middle of a request is left alone.
func TestKeptAliveMakeRoom(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok\n")
	})
	s, addr := start(t, h, Config{MaxConns: 4, HeaderTimeout: time.Minute})
	busy := make(chan error, 1)
	go func() { busy <- getPath(addr, "/slow") }()
	for s.OpenConns() < 1 {
		time.Sleep(time.Millisecond)
	}
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // and the connection stays, idle
	}
	for range 10 {
		if err := getHealth(addr, 5*time.Second); err != nil {
			t.Fatalf("health check with the cap taken by kept-alive connections: %v", err)
		}
	}
	close(release)
	if err := <-busy; err != nil {
		t.Errorf("the request in progress was cut: %v", err)
	}
}

func getPath(addr, path string) error {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// TestIdleConnectionsFileLimit runs the server in a process allowed 256
// file descriptors, as a small ulimit or a crowded host leaves it, and
// checks that a thousand idle connections do not exhaust them: a health
// check is still answered.
func TestIdleConnectionsFileLimit(t *testing.T) {
	if os.Getenv("HTTPLIMIT_CHILD") == "1" {
		t.Skip("run by the parent test")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestServeInLimitedProcess$")
	cmd.Env = append(os.Environ(), "HTTPLIMIT_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		t.Fatalf("child: %q %v", line, err)
	}
	dialMany(t, addr, 1000)
	if err := getHealth(addr, 10*time.Second); err != nil {
		t.Fatalf("health check behind 1,000 idle connections, 256 file descriptors: %v", err)
	}
}

// TestServeInLimitedProcess is the server of TestIdleConnectionsFileLimit.
func TestServeInLimitedProcess(t *testing.T) {
	if os.Getenv("HTTPLIMIT_CHILD") != "1" {
		t.Skip("run by TestIdleConnectionsFileLimit")
	}
	lim := syscall.Rlimit{Cur: 256, Max: 256}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	s := New(health(), Config{MaxConns: 200, HeaderTimeout: time.Minute})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	fmt.Printf("listening %s\n", l.Addr())
	io.Copy(io.Discard, os.Stdin) // until the parent is done
	s.Close()
}

// TestKeepAliveIdleTimeout checks that a kept-alive connection waiting
// for its next request is closed after the idle timeout.
func TestKeepAliveIdleTimeout(t *testing.T) {
	s, addr := start(t, health(), Config{IdleTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("no X-Content-Type-Options: nosniff")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle kept-alive connection: read %v, want EOF from the server closing it", err)
	}
	// The server counts the connection closed just after closing it.
	for deadline := time.Now().Add(5 * time.Second); s.OpenConns() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", s.OpenConns())
		}
	}
}

// bodyReader records what became of the request bodies it reads.
type bodyReader struct {
	pause time.Duration // before reading on, after the first read
	done  chan error
}

func (h *bodyReader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := make([]byte, 64<<10)
	n, err := r.Body.Read(buf)
	total := int64(n)
	if err == nil {
		time.Sleep(h.pause) // as a handler waits for storage
		var m int64
		m, err = io.CopyBuffer(io.Discard, r.Body, buf)
		total += m
		if err == nil && total != r.ContentLength {
			err = fmt.Errorf("read %d bytes of %d", total, r.ContentLength)
		}
	}
	h.done <- err
	if err == nil {
		io.WriteString(w, "stored\n")
	}
}

// TestSlowBodyCut checks that a body that stops arriving is cut after
// the stall timeout, however long it claims to be.
func TestSlowBodyCut(t *testing.T) {
	h := &bodyReader{done: make(chan error, 1)}
	_, addr := start(t, h, Config{StallTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /studies HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n%s", strings.Repeat("x", 1000))
	select {
	case err := <-h.done:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("stalled body: handler read %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled body was not cut")
	}
}

// TestLongBodyPasses checks that a body that keeps moving passes however
// long it takes, and that time the handler spends between reads is not
// counted against the client.
func TestLongBodyPasses(t *testing.T) {
	h := &bodyReader{pause: 600 * time.Millisecond, done: make(chan error, 1)}
	_, addr := start(t, h, Config{MinRate: 64 << 10, StallTimeout: 200 * time.Millisecond})
	pr, pw := io.Pipe()
	go func() {
		// 2 MiB over about a second, five stall timeouts: 2 MiB/s,
		// well above the minimum rate.
		chunk := make([]byte, 64<<10)
		for range 32 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
			time.Sleep(30 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+addr+"/studies", pr)
	req.ContentLength = 32 * 64 << 10
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-h.done; err != nil || resp.StatusCode != 200 {
		t.Errorf("a body moving steadily: %d, handler read %v", resp.StatusCode, err)
	}
}

// TestSlowReaderCut checks that a client that stops taking a response is
// cut after the stall timeout, so that it cannot hold a handler forever.
func TestSlowReaderCut(t *testing.T) {
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1<<20)
		var err error
		for i := 0; i < 1024 && err == nil; i++ {
			_, err = w.Write(buf)
		}
		done <- err
	})
	_, addr := start(t, h, Config{MinRate: 1 << 20, StallTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(c, "GET /series HTTP/1.1\r\nHost: x\r\n\r\n")
	c.Read(make([]byte, 1)) // the response starts, then nothing is read
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a client reading nothing took a 1 GiB response")
		}
	case <-ctx.Done():
		t.Fatal("a client that stopped reading held its handler")
	}
}
