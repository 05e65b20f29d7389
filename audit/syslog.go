package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

// SyslogConfig configures a Syslog sender.
type SyslogConfig struct {
	// URL is the collector: tls://HOST:PORT (RFC 5425; 6514 is the
	// registered port). Other schemes are refused: audit messages name
	// patients and do not cross a network in clear.
	URL string
	// TLS configures the connection: the collector is verified against
	// its RootCAs and pacsd presents its client certificate, as RFC 5425
	// §5 asks for mutual authentication. ServerName defaults to the
	// URL's host.
	TLS *tls.Config
	// Hostname is the HOSTNAME field (default os.Hostname).
	Hostname string
	// QueueSize bounds the messages waiting to be sent (default 1024);
	// when it is full, the oldest message is dropped.
	QueueSize int
	Logger    *slog.Logger
}

// Syslog sends audit messages to a syslog collector over TLS, as RFC 5424
// messages with the octet-counting framing of RFC 5425. It reconnects
// after errors, with a growing delay. Send never blocks.
type Syslog struct {
	addr     string
	tls      *tls.Config
	hostname string
	procID   string
	log      *slog.Logger
	limit    int

	mu      sync.Mutex
	queue   []*Message
	dropped int64
	closing bool
	wake    chan struct{}
	done    chan struct{}
	stop    context.CancelFunc
	ctx     context.Context
}

// NewSyslog returns a sender and starts it.
func NewSyslog(cfg SyslogConfig) (*Syslog, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "tls" || u.Host == "" {
		return nil, fmt.Errorf("audit: syslog %q: want tls://HOST:PORT", cfg.URL)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || port == "" {
		host, port = u.Host, "6514"
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLS != nil {
		t = cfg.TLS.Clone()
	}
	if t.ServerName == "" {
		t.ServerName = host
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "-"
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	s := &Syslog{
		addr: net.JoinHostPort(host, port), tls: t, hostname: cfg.Hostname,
		procID: strconv.Itoa(os.Getpid()), log: cfg.Logger, limit: cfg.QueueSize,
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// Send queues m. When the queue is full the oldest message is dropped:
// the journal keeps every message, the collector gets the latest.
func (s *Syslog) Send(m *Message) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.limit {
		s.queue = s.queue[1:]
		s.dropped++
	}
	s.queue = append(s.queue, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Dropped returns how many messages were dropped from a full queue.
func (s *Syslog) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close sends what is queued until ctx ends, then stops.
func (s *Syslog) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.stop()
		<-s.done
		return ctx.Err()
	}
}

// run sends queued messages, one connection at a time.
func (s *Syslog) run() {
	defer close(s.done)
	var conn *tls.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	delay := time.Duration(0)
	for {
		s.mu.Lock()
		var m *Message
		if len(s.queue) > 0 {
			m = s.queue[0]
		}
		closing := s.closing
		s.mu.Unlock()
		if m == nil {
			if closing {
				return
			}
			select {
			case <-s.wake:
			case <-s.ctx.Done():
				return
			}
			continue
		}
		if conn == nil {
			var err error
			if conn, err = s.dial(); err != nil {
				delay = min(max(2*delay, 500*time.Millisecond), 30*time.Second)
				s.log.Warn("audit syslog: cannot connect; retrying", "addr", s.addr, "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
					return
				}
				continue
			}
			delay = 0
		}
		frame, err := s.frame(m)
		if err != nil {
			s.log.Error("audit syslog: cannot encode a message", "err", err)
			s.pop(m)
			continue
		}
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(frame); err != nil {
			s.log.Warn("audit syslog: send failed; reconnecting", "addr", s.addr, "err", err)
			conn.Close()
			conn = nil
			continue
		}
		s.pop(m)
	}
}

// pop removes m from the head of the queue unless Send has dropped it
// meanwhile.
func (s *Syslog) pop(m *Message) {
	s.mu.Lock()
	if len(s.queue) > 0 && s.queue[0] == m {
		s.queue = s.queue[1:]
	}
	s.mu.Unlock()
}

func (s *Syslog) dial() (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: s.tls}
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// Syslog facility 10 (security/authorization), as IHE ATNA uses.
const facilityAuth = 10

// frame returns m as an RFC 5424 message with RFC 5425 octet counting:
// "LEN <PRI>1 TIMESTAMP HOST APP PROCID MSGID - BOM XML".
func (s *Syslog) frame(m *Message) ([]byte, error) {
	severity := 5 // notice
	if m.Outcome != "" && m.Outcome != Success {
		severity = 4 // warning
	}
	msg := fmt.Appendf(nil, "<%d>1 %s %s pacsd %s IHE+RFC-3881 - \xEF\xBB\xBF",
		facilityAuth*8+severity, m.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), s.hostname, s.procID)
	msg, err := m.AppendXML(msg)
	if err != nil {
		return nil, err
	}
	if len(msg) > 1<<20 {
		return nil, errors.New("message longer than 1 MiB")
	}
	return append(strconv.AppendInt(nil, int64(len(msg)), 10), append([]byte{' '}, msg...)...), nil
}
