package dimse

import (
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
)

// effect is what an action visibly does.
type effect struct {
	sends    pdu.Type // a PDU of this type reaches the peer (0: none)
	closes   bool     // the transport is closed
	artim    bool     // ARTIM runs afterwards
	pdata    bool     // the P-DATA indication is issued
	release  bool     // the A-RELEASE indication is issued
	released bool     // the A-RELEASE confirmation is issued
}

var effects = map[action]effect{
	ae1:  {},
	ae2:  {sends: pdu.TypeAssociateRQ},
	ae3:  {},
	ae4:  {closes: true},
	ae5:  {artim: true},
	ae6:  {}, // acceptable; the reject branch is tested separately
	ae7:  {sends: pdu.TypeAssociateAC},
	ae8:  {sends: pdu.TypeAssociateRJ, artim: true},
	dt1:  {sends: pdu.TypePDataTF},
	dt2:  {pdata: true},
	ar1:  {sends: pdu.TypeReleaseRQ},
	ar2:  {release: true},
	ar3:  {closes: true, released: true},
	ar4:  {sends: pdu.TypeReleaseRP, artim: true},
	ar5:  {closes: true},
	ar6:  {pdata: true},
	ar7:  {sends: pdu.TypePDataTF},
	ar8:  {release: true},
	ar9:  {sends: pdu.TypeReleaseRP},
	ar10: {released: true},
	aa1:  {sends: pdu.TypeAbort, artim: true},
	aa2:  {closes: true},
	aa3:  {closes: true},
	aa4:  {closes: true},
	aa5:  {closes: true},
	aa6:  {},
	aa7:  {sends: pdu.TypeAbort},
	aa8:  {sends: pdu.TypeAbort, artim: true},
}

// inputFor returns what an event brings with it.
func inputFor(ev event) *input {
	in := &input{acceptable: true, reason: pdu.AbortReasonUnexpectedPDU}
	switch ev {
	case evt2:
		in.send = &pdu.AssociateRQ{ProtocolVersion: 1, CalledAETitle: "B", CallingAETitle: "A", ApplicationContext: pdu.ApplicationContextName,
			PresentationContexts: []pdu.PresentationContextRQ{{ID: 1, AbstractSyntax: "1.2.840.10008.1.1", TransferSyntaxes: []string{"1.2.840.10008.1.2"}}}}
	case evt3:
		in.recv = &pdu.AssociateAC{}
	case evt4:
		in.recv = &pdu.AssociateRJ{Result: 1, Source: 1, Reason: 1}
	case evt6:
		in.recv = &pdu.AssociateRQ{}
	case evt7:
		in.send = &pdu.AssociateAC{ProtocolVersion: 1, CalledAETitle: "B", CallingAETitle: "A", ApplicationContext: pdu.ApplicationContextName}
	case evt8:
		in.send = &pdu.AssociateRJ{Result: 1, Source: 1, Reason: 7}
	case evt9:
		hdr, _ := pdu.AppendPDataHeader(nil, 1, true, true, 2)
		in.data = net.Buffers{hdr, []byte{0, 0}}
	case evt10:
		in.recv = &pdu.PDataTF{PDVs: []pdu.PDV{{ContextID: 1, Command: true, Last: true, Data: []byte{0, 0}}}}
	case evt12:
		in.recv = &pdu.ReleaseRQ{}
	case evt13:
		in.recv = &pdu.ReleaseRP{}
	case evt16:
		in.recv = &pdu.Abort{}
	}
	return in
}

// TestStateMachineTable walks every cell of PS3.8 Table 9-10: for each
// state and each event it puts an association in that state, fires the
// event, and checks the next state and what the action visibly did. Events
// with no cell must leave the state alone and report an error.
func TestStateMachineTable(t *testing.T) {
	cells := 0
	for st := sta1; st <= sta13; st++ {
		for ev := evt1; ev <= evt19; ev++ {
			cell, ok := table[st][ev]
			for _, requestor := range []bool{true, false} {
				if !ok && !requestor {
					continue
				}
				name := st.String() + "/" + ev.String()
				if requestor && cell.action == ar8 {
					name += "/requestor"
				} else if cell.action == ar8 {
					name += "/acceptor"
				} else if !requestor {
					continue
				}
				t.Run(name, func(t *testing.T) {
					checkCell(t, st, ev, requestor)
				})
			}
			if ok {
				cells++
			}
		}
	}
	// PS3.8 Table 9-10 has this many non-empty cells.
	if cells != 123 {
		t.Errorf("table has %d cells", cells)
	}
}

func checkCell(t *testing.T, st state, ev event, requestor bool) {
	local, peer := net.Pipe()
	defer peer.Close()
	a := newAssociation(local, testLogger(t), requestor, time.Hour)
	defer a.closeTransport(nil)
	a.st = st
	var pdata, release bool
	a.onPData = func(*pdu.PDataTF) error { pdata = true; return nil }
	a.onRelease = func() { release = true }
	if st == sta13 || st == sta2 {
		a.startARTIM() // these states run ARTIM
	}

	// The peer reads whatever the action sends.
	got := make(chan pdu.Type, 1)
	go func() {
		p, err := pdu.NewReader(peer, pdu.DefaultMaxLength).Next()
		if err != nil {
			close(got)
			return
		}
		got <- p.Type()
	}()

	cell, ok := table[st][ev]
	act, err := a.fire(ev, inputFor(ev))
	if !ok {
		var nt *errNoTransition
		if !errors.As(err, &nt) || a.state() != st {
			t.Fatalf("no cell: fire = %v, %v; state %v", act, err, a.state())
		}
		return
	}
	if act != cell.action {
		t.Fatalf("action %v, table says %v", act, cell.action)
	}
	want := cell.next
	if cell.action == ar8 && !requestor {
		want = cell.alt
	}
	e := effects[act]
	if e.closes {
		want = sta1
	}
	if s := a.state(); s != want {
		t.Errorf("next state %v, want %v", s, want)
	}
	if e.sends != 0 {
		select {
		case typ := <-got:
			if typ != e.sends {
				t.Errorf("sent %v, want %v", typ, e.sends)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("nothing sent, want %v", e.sends)
		}
	} else if !e.closes {
		select {
		case typ, ok := <-got:
			if ok {
				t.Errorf("sent %v, want nothing", typ)
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-a.done:
		if !e.closes {
			t.Error("transport closed")
		}
	default:
		if e.closes {
			t.Error("transport left open")
		}
	}
	a.mu.Lock()
	artim := a.artim != nil
	a.mu.Unlock()
	if wantARTIM := e.artim || (!e.closes && (st == sta2 || st == sta13) && act != ae6 && act != ar5 && act != aa5); artim != wantARTIM && !e.closes {
		t.Errorf("ARTIM running: %v, want %v", artim, wantARTIM)
	}
	if pdata != e.pdata || release != e.release {
		t.Errorf("P-DATA indication %v (want %v), release indication %v (want %v)", pdata, e.pdata, release, e.release)
	}
	select {
	case <-a.released:
		if !e.released {
			t.Error("release confirmed")
		}
	default:
		if e.released {
			t.Error("release not confirmed")
		}
	}
}

// TestAE6Reject checks the other branch of AE-6: an unacceptable request
// is answered with A-ASSOCIATE-RJ, ARTIM starts and the state is Sta13.
func TestAE6Reject(t *testing.T) {
	local, peer := net.Pipe()
	defer peer.Close()
	a := newAssociation(local, testLogger(t), false, time.Hour)
	defer a.closeTransport(nil)
	a.st = sta2
	got := make(chan pdu.PDU, 1)
	go func() {
		p, _ := pdu.NewReader(peer, pdu.DefaultMaxLength).Next()
		got <- p
	}()
	rj := &pdu.AssociateRJ{Result: 1, Source: 1, Reason: 7}
	if _, err := a.fire(evt6, &input{acceptable: false, send: rj}); err != nil {
		t.Fatal(err)
	}
	if p := <-got; p == nil || p.Type() != pdu.TypeAssociateRJ {
		t.Fatalf("sent %v", p)
	}
	if a.state() != sta13 || a.artim == nil {
		t.Errorf("state %v, ARTIM %v", a.state(), a.artim != nil)
	}
}

// TestARTIMExpiry checks that ARTIM closes the transport in Sta13, after
// its full timeout and not before, in a bubble of fake time.
func TestARTIMExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local, peer := net.Pipe()
		defer peer.Close()
		a := newAssociation(local, testLogger(t), false, 30*time.Second)
		a.st = sta13
		a.startARTIM()
		time.Sleep(29 * time.Second)
		synctest.Wait()
		select {
		case <-a.done:
			t.Fatal("ARTIM fired early")
		default:
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case <-a.done:
		default:
			t.Fatal("ARTIM did not close the transport")
		}
		if a.state() != sta1 {
			t.Errorf("state %v", a.state())
		}
	})
}

// TestNoAssociationRequest checks that a server closes a connection on
// which no A-ASSOCIATE-RQ arrives within ARTIM.
func TestNoAssociationRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: testLogger(t), ARTIMTimeout: 10 * time.Second}
		done := make(chan struct{})
		go func() {
			s.ServeConn(c2)
			close(done)
		}()
		time.Sleep(9 * time.Second)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("connection closed before ARTIM expired")
		default:
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("connection still served after ARTIM expired")
		}
	})
}

// TestIdleTimeout checks that an association which sends nothing is
// aborted after the idle timeout.
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{AETitle: "PACSD", Echo: echoOK{}, Logger: testLogger(t), IdleTimeout: time.Minute}
		d := &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{{uid.Verification, []string{uid.ImplicitVRLittleEndian}}}}
		a := pipePair(t, s, d)
		if err := a.Echo(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if a.Err() != nil {
			t.Fatalf("aborted early: %v", a.Err())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		<-a.Done()
		if !errors.Is(a.Err(), ErrAborted) {
			t.Errorf("association ended with %v", a.Err())
		}
	})
}
