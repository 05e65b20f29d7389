package dimse

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/uid"
)

// events collects what a Server observes.
type events struct {
	mu  sync.Mutex
	got []AssociationEvent
}

func (e *events) observe(ev AssociationEvent) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
}

func (e *events) list() []AssociationEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]AssociationEvent(nil), e.got...)
}

type callerKey struct{}

// callerEcho answers C-ECHO with an error unless its context carries the
// caller AssociationContext put there.
type callerEcho struct{ want string }

func (e callerEcho) Echo(ctx context.Context, a *Association) error {
	if got, _ := ctx.Value(callerKey{}).(string); got != e.want {
		return Errorf(StatusProcessingFailure, "context carries caller %q, want %q", got, e.want)
	}
	return nil
}

func TestObserveAndAssociationContext(t *testing.T) {
	var ev events
	s := &Server{AETitle: "PACSD", Echo: callerEcho{want: "SCU via pipe"}, Logger: testLogger(t), Observe: ev.observe,
		AllowCaller: func(ae string, _ net.Addr) bool { return ae != "INTRUDER" },
		AssociationContext: func(ctx context.Context, a *Association) context.Context {
			return context.WithValue(ctx, callerKey{}, a.CallingAE()+" via "+a.RemoteAddr().String())
		},
	}
	d := &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{{uid.Verification, []string{uid.ImplicitVRLittleEndian}}}}
	a := pipePair(t, s, d)
	if err := a.Echo(t.Context()); err != nil {
		t.Fatalf("Echo: %v", err)
	}
	if err := a.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	c1, c2 := net.Pipe()
	done := make(chan struct{})
	go func() { s.ServeConn(c2); close(done) }()
	intruder := &Dialer{CallingAE: "INTRUDER", CalledAE: "PACSD", Proposals: d.Proposals}
	if _, err := intruder.DialConn(t.Context(), c1); !errors.Is(err, ErrRejected) {
		t.Fatalf("INTRUDER: %v, want a rejection", err)
	}
	<-done
	got := ev.list()
	if len(got) != 2 {
		t.Fatalf("observed %d events, want 2: %+v", len(got), got)
	}
	if e := got[0]; !e.Accepted || e.CallingAE != "SCU" || e.CalledAE != "PACSD" || e.Reason != "" {
		t.Errorf("accepted association observed as %+v", e)
	}
	if e := got[1]; e.Accepted || e.CallingAE != "INTRUDER" || !strings.Contains(e.Reason, "calling AE") {
		t.Errorf("rejected association observed as %+v", e)
	}
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pacsd test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSHandshakeObserved checks that a handshake refused for want of a
// client certificate is observed, and that per-host counting sees through
// the TLS connection to the peer's address.
func TestTLSHandshakeObserved(t *testing.T) {
	cert := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var ev events
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: testLogger(t), Observe: ev.observe}
	go s.Serve(tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert}))
	t.Cleanup(func() { s.Close() })

	conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		// TLS 1.3: the client learns of the refusal on its first read.
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("handshake without a client certificate succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(ev.list()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := ev.list()
	if len(got) != 1 || got[0].Accepted || !strings.Contains(got[0].Reason, "TLS handshake") || !strings.HasPrefix(got[0].RemoteAddr.String(), "127.0.0.1:") {
		t.Fatalf("observed %+v, want one failed TLS handshake from 127.0.0.1", got)
	}
	if h := hostOf(got[0].RemoteAddr); h != "127.0.0.1" {
		t.Errorf("hostOf(%v) = %q, want 127.0.0.1", got[0].RemoteAddr, h)
	}
}

// wrappedAddr is an address wrapped as a TLS listener may wrap it.
type wrappedAddr struct{ net.Addr }

func TestHostOf(t *testing.T) {
	tcp := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 104}
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{tcp, "10.0.0.7"},
		{wrappedAddr{tcp}, "10.0.0.7"},
		{wrappedAddr{&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.8"), Port: 1}}, "10.0.0.8"},
		{&net.UnixAddr{Name: "pipe", Net: "unix"}, "pipe"},
	} {
		if got := hostOf(tc.addr); got != tc.want {
			t.Errorf("hostOf(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestObserveOperationsAndEnd checks that every final response is
// observed with its command, status and caller, a refused request
// included, and that the end of an accepted association is observed
// once its operations are over.
func TestObserveOperationsAndEnd(t *testing.T) {
	var mu sync.Mutex
	var ops []OperationEvent
	ended := make(chan AssociationEvent, 1)
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Store: refusingStore{}, Logger: testLogger(t),
		ObserveOperation: func(e OperationEvent) {
			mu.Lock()
			defer mu.Unlock()
			ops = append(ops, e)
		},
		ObserveEnd: func(e AssociationEvent) { ended <- e },
	}
	d := &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{
		{uid.Verification, []string{uid.ImplicitVRLittleEndian}},
		{uid.CTImageStorage, []string{uid.ImplicitVRLittleEndian}},
	}}
	a := pipePair(t, s, d)
	if err := a.Echo(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err := a.Store(t.Context(), &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.3",
		TransferSyntaxUID: uid.ImplicitVRLittleEndian, Dataset: strings.NewReader("")})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusOutOfResources {
		t.Fatalf("C-STORE: %v, want status %v", err, StatusOutOfResources)
	}
	select {
	case e := <-ended:
		t.Fatalf("association observed ended while open: %+v", e)
	default:
	}
	if err := a.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ended:
		if e.CallingAE != "SCU" || e.CalledAE != "PACSD" || !e.Accepted {
			t.Errorf("end observed as %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the end of the association was not observed")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []struct {
		cmd string
		st  Status
	}{{"C-ECHO", StatusSuccess}, {"C-STORE", StatusOutOfResources}}
	if len(ops) != len(want) {
		t.Fatalf("observed %d operations, want %d: %+v", len(ops), len(want), ops)
	}
	for i, w := range want {
		if o := ops[i]; o.Command != w.cmd || o.Status != w.st || o.CallingAE != "SCU" || o.Duration <= 0 {
			t.Errorf("operation %d observed as %+v, want %s with status %v", i, o, w.cmd, w.st)
		}
	}
}

// refusingStore refuses every instance for want of room.
type refusingStore struct{}

func (refusingStore) Store(ctx context.Context, a *Association, req *StoreRequest) error {
	return Errorf(StatusOutOfResources, "full")
}
