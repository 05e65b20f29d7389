package dimse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
)

// Tests of what a hostile or broken peer can do to a Server: each fails
// without the fix it names.

// sendRaw sends an encoded command set and, if data is not nil, a first
// fragment of a data set (the last if last is set), and registers a waiter
// for the response to message id.
func sendRaw(t *testing.T, a *Association, pc byte, id uint16, cmd []byte, data []byte, last bool) <-chan *response {
	t.Helper()
	ch := make(chan *response, 1)
	a.pending.Store(id, func(r *response) { ch <- r })
	if err := a.sendPDV(pc, true, true, cmd); err != nil {
		t.Fatal(err)
	}
	if data != nil {
		if err := a.sendPDV(pc, false, last, data); err != nil {
			t.Fatal(err)
		}
	}
	return ch
}

func storeCommand(t *testing.T, id uint16, sop string) []byte {
	t.Helper()
	b, err := (&cmdset.Command{CommandField: cmdset.CStoreRQ, MessageID: &id, AffectedSOPClassUID: uid.CTImageStorage,
		AffectedSOPInstanceUID: sop, CommandDataSetType: cmdset.DataSetPresent}).AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// slowStore reads a data set with a pause between its reads, as an
// archive waiting on slow storage does.
type slowStore struct {
	pause time.Duration
	mu    sync.Mutex
	got   map[string]int
}

func (s *slowStore) Store(ctx context.Context, a *Association, req *StoreRequest) error {
	buf := make([]byte, 1000)
	n := 0
	for {
		time.Sleep(s.pause)
		m, err := req.Dataset.Read(buf)
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[string]int{}
	}
	s.got[req.SOPInstanceUID] = n
	return nil
}

// TestStalledDataSet: a C-STORE whose data set stops arriving used to hold
// its association forever, since the read deadline was cleared while an
// operation ran. A read deadline now bounds each PDU of a message in
// transit, and the handler's own pace does not count against it.
func TestStalledDataSet(t *testing.T) {
	t.Run("peer stops sending", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store := &slowStore{}
			s := &Server{AETitle: "PACSD", Store: store, Logger: testLogger(t), ReadTimeout: time.Minute}
			a := pipePair(t, s, &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{{uid.CTImageStorage, []string{uid.ExplicitVRLittleEndian}}}})
			pc, _ := a.Context(uid.CTImageStorage, "")
			sendRaw(t, a, pc.ID, 1, storeCommand(t, 1, "1.2.3"), make([]byte, 100), false)
			time.Sleep(59 * time.Second)
			synctest.Wait()
			if a.Err() != nil {
				t.Fatalf("aborted before the read timeout: %v", a.Err())
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			select {
			case <-a.Done():
			default:
				t.Fatal("association still up a minute after its data set stopped")
			}
			if !errors.Is(a.Err(), ErrAborted) {
				t.Errorf("association ended with %v", a.Err())
			}
		})
	})
	t.Run("handler slower than the read timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store := &slowStore{pause: 5 * time.Minute}
			s := &Server{AETitle: "PACSD", Store: store, Logger: testLogger(t), ReadTimeout: time.Minute, MaxPDULength: minPDULength}
			a := pipePair(t, s, &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{{uid.CTImageStorage, []string{uid.ExplicitVRLittleEndian}}}})
			st, err := a.Store(t.Context(), &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.4",
				TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(make([]byte, 20000))})
			if err != nil || st != StatusSuccess {
				t.Fatalf("Store = %v, %v", st, err)
			}
			store.mu.Lock()
			defer store.mu.Unlock()
			if store.got["1.2.4"] != 20000 {
				t.Errorf("stored %d bytes", store.got["1.2.4"])
			}
		})
	})
}

// TestBareConnections: connections that never send an A-ASSOCIATE-RQ used
// to count against MaxAssociations for the ARTIM time, so that a few
// dozen connects locked every AE out. Only negotiated associations count
// now, and connections still to associate are capped per host.
func TestBareConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: testLogger(t), MaxAssociations: 2, MaxNegotiatingPerHost: 3}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })

	// A host opens ten connections and sends nothing: three are held
	// until ARTIM, the others closed at once.
	var held, closed int
	for range 10 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
			closed++
		} else {
			held++
		}
	}
	if held != 3 || closed != 7 {
		t.Errorf("%d connections held, %d closed; want 3 and 7", held, closed)
	}

	// Another host associates as usual, up to MaxAssociations.
	dial := func() (*Association, error) {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		c, err := nd.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Skipf("cannot dial from 127.0.0.2: %v", err)
		}
		d := &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{{uid.Verification, []string{uid.ImplicitVRLittleEndian}}}}
		return d.DialConn(t.Context(), c)
	}
	for i := range 2 {
		a, err := dial()
		if err != nil {
			t.Fatalf("association %d: %v", i+1, err)
		}
		defer a.Abort()
		if err := a.Echo(t.Context()); err != nil {
			t.Fatalf("Echo: %v", err)
		}
	}
	if _, err := dial(); !errors.Is(err, ErrRejected) {
		t.Errorf("third association: %v, want a rejection", err)
	}
}

// TestOverlongUID: a UID longer than 64 characters in a C-STORE command
// used to abort the association. The request is answered 0xC000 now,
// after its data set, and the association carries on.
func TestOverlongUID(t *testing.T) {
	store := &memStore{}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Store: store, Logger: testLogger(t)}
	a := pipePair(t, s, &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{
		{uid.Verification, []string{uid.ImplicitVRLittleEndian}},
		{uid.CTImageStorage, []string{uid.ExplicitVRLittleEndian}},
	}})
	pc, _ := a.Context(uid.CTImageStorage, "")
	long := "1.2.840.99999." + strings.Repeat("1234567890", 6) // 74 characters
	cmd := storeCommand(t, 9, "")
	cmd = binary.LittleEndian.AppendUint16(cmd, 0)
	cmd = binary.LittleEndian.AppendUint16(cmd, tag.AffectedSOPInstanceUID.Element())
	cmd = binary.LittleEndian.AppendUint32(cmd, uint32(len(long)))
	cmd = append(cmd, long...)
	rsp := sendRaw(t, a, pc.ID, 9, cmd, make([]byte, 300), true)
	select {
	case r := <-rsp:
		if st := responseStatus(r.cmd); st != StatusCannotUnderstand || !strings.Contains(r.cmd.ErrorComment, "(0000,1000)") {
			t.Errorf("status %v, comment %q; want 0xC000 naming (0000,1000)", st, r.cmd.ErrorComment)
		}
	case <-a.Done():
		t.Fatalf("association ended: %v", a.Err())
	}
	if _, ok := store.get(long); ok {
		t.Error("the instance was stored")
	}
	if err := a.Echo(t.Context()); err != nil {
		t.Errorf("Echo afterwards: %v", err)
	}
}

// captured collects log records, for tests of what is logged.
type captured struct {
	mu   sync.Mutex
	msgs []string
}

func (c *captured) Enabled(context.Context, slog.Level) bool { return true }
func (c *captured) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, r.Message)
	return nil
}
func (c *captured) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *captured) WithGroup(string) slog.Handler      { return c }

func (c *captured) has(sub string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// rawRQ encodes an A-ASSOCIATE-RQ for Verification on contexts whose IDs
// are then set to ids, as the encoder refuses to write even ones.
func rawRQ(t *testing.T, ids ...byte) []byte {
	t.Helper()
	rq := &pdu.AssociateRQ{ProtocolVersion: pdu.ProtocolVersion, CalledAETitle: "PACSD", CallingAETitle: "STGCMTSCU",
		ApplicationContext: pdu.ApplicationContextName, UserInfo: pdu.UserInfo{MaxLength: 16384, ImplementationClassUID: "1.2.3"}}
	for i := range ids {
		rq.PresentationContexts = append(rq.PresentationContexts, pdu.PresentationContextRQ{ID: byte(2*i + 1),
			AbstractSyntax: uid.Verification, TransferSyntaxes: []string{uid.ImplicitVRLittleEndian}})
	}
	b, err := rq.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Items follow the 74 bytes of header and fixed fields; each
	// presentation context item (0x20) holds its ID in its first byte.
	n := 0
	for off := 74; off < len(b); off += 4 + int(binary.BigEndian.Uint16(b[off+2:])) {
		if b[off] == 0x20 {
			b[off+4] = ids[n]
			n++
		}
	}
	return b
}

// TestEvenContextID: dcm4che's stgcmtscu proposes presentation context
// ID 2, which PS3.8 forbids. The association used to be aborted; the
// context is accepted now, answered and used by its ID, with a warning
// naming the non-conformance. An ID given twice still aborts.
func TestEvenContextID(t *testing.T) {
	t.Run("accepted", func(t *testing.T) {
		logs := &captured{}
		s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: slog.New(logs)}
		c1, c2 := net.Pipe()
		go s.ServeConn(c2)
		defer c1.Close()
		if _, err := c1.Write(rawRQ(t, 2)); err != nil {
			t.Fatal(err)
		}
		rd := pdu.NewReader(c1, pdu.DefaultMaxLength)
		p, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		ac, ok := p.(*pdu.AssociateAC)
		if !ok || len(ac.PresentationContexts) != 1 || ac.PresentationContexts[0].ID != 2 || ac.PresentationContexts[0].Result != pdu.ResultAcceptance {
			t.Fatalf("answered %#v", p)
		}
		id := uint16(1)
		echo, _ := (&cmdset.Command{CommandField: cmdset.CEchoRQ, MessageID: &id, AffectedSOPClassUID: uid.Verification, CommandDataSetType: cmdset.NoDataSet}).AppendTo(nil)
		pd, _ := (&pdu.PDataTF{PDVs: []pdu.PDV{{ContextID: 2, Command: true, Last: true, Data: echo}}}).AppendTo(nil)
		if _, err := c1.Write(pd); err != nil {
			t.Fatal(err)
		}
		p, err = rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		d, ok := p.(*pdu.PDataTF)
		if !ok || len(d.PDVs) != 1 || d.PDVs[0].ContextID != 2 {
			t.Fatalf("C-ECHO answered with %#v", p)
		}
		rsp, err := cmdset.Decode(d.PDVs[0].Data)
		if err != nil || rsp.CommandField != cmdset.CEchoRSP || rsp.Status == nil || *rsp.Status != 0 {
			t.Fatalf("C-ECHO-RSP %+v, %v", rsp, err)
		}
		if !logs.has("presentation context ID is even") {
			t.Errorf("no warning logged; log: %q", logs.msgs)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: testLogger(t)}
		c1, c2 := net.Pipe()
		go s.ServeConn(c2)
		defer c1.Close()
		go c1.Write(rawRQ(t, 2, 2))
		p, err := pdu.NewReader(c1, pdu.DefaultMaxLength).Next()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.(*pdu.Abort); !ok {
			t.Fatalf("answered %#v, want A-ABORT", p)
		}
	})
}
