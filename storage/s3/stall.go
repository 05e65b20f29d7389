package s3

import (
	"context"
	"net"
	"time"
)

// DefaultStallTimeout is Config.StallTimeout when it is zero.
const DefaultStallTimeout = 30 * time.Second

// stallDialer dials connections on which every read and write fails once
// it has waited longer than timeout for the server: a server that hangs,
// rather than refusing or answering an error, would otherwise hold a
// request (and the DIMSE peer waiting for its C-STORE response) until
// minio-go's response timeout of a minute, once per attempt, or for ever
// while the request body is still being sent. A deadline on progress,
// rather than on the whole request, bounds a hung server without
// limiting how long a large object may take to go up.
type stallDialer struct {
	dialer  net.Dialer
	timeout time.Duration
}

func (d *stallDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, timeout: d.timeout}, nil
}

// stallConn moves its deadline forward at the start of every read and
// write. Moving it also extends a read already waiting: http.Transport
// keeps one waiting on an idle connection, which then fails only after
// timeout without a request, and the transport drops the connection as
// it drops one the server closed.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *stallConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
