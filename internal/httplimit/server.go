package httplimit

import (
	"net"
	"net/http"
	"time"
)

// Config holds the limits of a Server. A zero field takes the default
// given with it.
type Config struct {
	// MaxConns bounds the open connections (default 512). A connection
	// beyond it closes the one idle the longest, or waits for one to
	// close.
	MaxConns int
	// HeaderTimeout bounds the time to read a request's header, from
	// the first byte of the connection or the end of the previous
	// request (default 10 s).
	HeaderTimeout time.Duration
	// IdleTimeout bounds the time a kept-alive connection waits for its
	// next request (default 2 min).
	IdleTimeout time.Duration
	// A request body must arrive, and a response be taken, at an
	// average of MinRate bytes a second (default 4 KiB), stalling for at
	// most StallTimeout (default 30 s). Only the time the server spends
	// waiting on the client counts.
	MinRate      int64
	StallTimeout time.Duration
}

// Defaults of Config.
const (
	DefaultMaxConns      = 512
	DefaultHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout   = 2 * time.Minute
	DefaultMinRate       = 4 << 10
	DefaultStallTimeout  = 30 * time.Second
)

func (c Config) withDefaults() Config {
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.HeaderTimeout <= 0 {
		c.HeaderTimeout = DefaultHeaderTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MinRate <= 0 {
		c.MinRate = DefaultMinRate
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	return c
}

// Server is an http.Server with the limits of its Config. Serve it with
// its Serve method, which caps the connections; Shutdown and Close are
// http.Server's.
type Server struct {
	http.Server
	conns *connSet
}

// New returns a Server of h within the limits of c.
func New(h http.Handler, c Config) *Server {
	c = c.withDefaults()
	s := &Server{conns: newConnSet(c.MaxConns)}
	s.Handler = progress(h, c.MinRate, c.StallTimeout)
	s.ReadHeaderTimeout = c.HeaderTimeout
	s.IdleTimeout = c.IdleTimeout
	s.ConnState = s.conns.setState
	return s
}

// Serve accepts connections on l, at most MaxConns at a time, and serves
// them. It returns http.ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	return s.Server.Serve(&listener{Listener: l, conns: s.conns, closed: make(chan struct{})})
}

// OpenConns returns the number of connections open.
func (s *Server) OpenConns() int { return s.conns.len() }
