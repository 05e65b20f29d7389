package ul

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

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

// standardGrid is PS3.8 Table 9-10 transcribed as the standard prints it:
// a row per event, a column per state, the action of each cell, "." for
// an empty one. It is written apart from table, in another layout, so
// that a cell mistyped in either fails TestTableIsTheStandard.
var standardGrid = [...]string{
	//        Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10 Sta11 Sta12 Sta13
	evt1:  "  AE-1  .     .     .     .     .     .     .     .     .     .     .     .    ",
	evt2:  "  .     .     .     AE-2  .     .     .     .     .     .     .     .     .    ",
	evt3:  "  .     AA-1  AA-8  .     AE-3  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6 ",
	evt4:  "  .     AA-1  AA-8  .     AE-4  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6 ",
	evt5:  "  AE-5  .     .     .     .     .     .     .     .     .     .     .     .    ",
	evt6:  "  .     AE-6  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7 ",
	evt7:  "  .     .     AE-7  .     .     .     .     .     .     .     .     .     .    ",
	evt8:  "  .     .     AE-8  .     .     .     .     .     .     .     .     .     .    ",
	evt9:  "  .     .     .     .     .     DT-1  .     AR-7  .     .     .     .     .    ",
	evt10: "  .     AA-1  AA-8  .     AA-8  DT-2  AR-6  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6 ",
	evt11: "  .     .     .     .     .     AR-1  .     .     .     .     .     .     .    ",
	evt12: "  .     AA-1  AA-8  .     AA-8  AR-2  AR-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-6 ",
	evt13: "  .     AA-1  AA-8  .     AA-8  AA-8  AR-3  AA-8  AA-8  AR-10 AR-3  AA-8  AA-6 ",
	evt14: "  .     .     .     .     .     .     .     AR-4  AR-9  .     .     AR-4  .    ",
	evt15: "  .     .     AA-1  AA-2  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  AA-1  .    ",
	evt16: "  .     AA-2  AA-3  .     AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-3  AA-2 ",
	evt17: "  .     AA-5  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AA-4  AR-5 ",
	evt18: "  .     AA-2  .     .     .     .     .     .     .     .     .     .     AA-2 ",
	evt19: "  .     AA-1  AA-8  .     AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-8  AA-7 ",
}

// standardNext is the next state of each action, from PS3.8 Tables 9-6
// to 9-9; AE-6 and AR-8 name two, the first when the request is
// acceptable (AE-6) or this side is the requestor (AR-8).
var standardNext = map[string][]state{
	"AE-1": {sta4}, "AE-2": {sta5}, "AE-3": {sta6}, "AE-4": {sta1}, "AE-5": {sta2},
	"AE-6": {sta3, sta13}, "AE-7": {sta6}, "AE-8": {sta13},
	"DT-1": {sta6}, "DT-2": {sta6},
	"AR-1": {sta7}, "AR-2": {sta8}, "AR-3": {sta1}, "AR-4": {sta13}, "AR-5": {sta1},
	"AR-6": {sta7}, "AR-7": {sta8}, "AR-8": {sta9, sta10}, "AR-9": {sta11}, "AR-10": {sta12},
	"AA-1": {sta13}, "AA-2": {sta1}, "AA-3": {sta1}, "AA-4": {sta1}, "AA-5": {sta1},
	"AA-6": {sta13}, "AA-7": {sta13}, "AA-8": {sta13},
}

// TestTableIsTheStandard compares table with the transcription of the
// standard, cell by cell: the action, and the next state Tables 9-6 to
// 9-9 give it.
func TestTableIsTheStandard(t *testing.T) {
	cells := 0
	for ev := evt1; ev <= evt19; ev++ {
		row := strings.Fields(standardGrid[ev])
		if len(row) != 13 {
			t.Fatalf("%v: the transcription has %d columns", ev, len(row))
		}
		for i, want := range row {
			st := state(i + 1)
			cell, ok := table[st][ev]
			if want == "." {
				if ok {
					t.Errorf("%v/%v: table has %v, the standard no cell", st, ev, cell.action)
				}
				continue
			}
			cells++
			if !ok {
				t.Errorf("%v/%v: table has no cell, the standard %s", st, ev, want)
				continue
			}
			if cell.action.String() != want {
				t.Errorf("%v/%v: table has %v, the standard %s", st, ev, cell.action, want)
			}
			next := standardNext[want]
			got := []state{cell.next}
			if len(next) == 2 {
				got = append(got, cell.alt)
			}
			if !slices.Equal(got, next) {
				t.Errorf("%v/%v: %s leads to %v, the standard says %v", st, ev, want, got, next)
			}
		}
	}
	// Table 9-10 has this many non-empty cells.
	if cells != 123 {
		t.Errorf("the transcription has %d cells", cells)
	}
}

// TestStateMachineCells walks every cell of the table: for each state and
// each event it puts a Conn in that state, fires the event, and checks
// the next state and what the action visibly did. Events with no cell
// must leave the state alone and report an error.
func TestStateMachineCells(t *testing.T) {
	for st := sta1; st <= sta13; st++ {
		for ev := evt1; ev <= evt19; ev++ {
			cell, ok := table[st][ev]
			for _, requestor := range []bool{true, false} {
				name := st.String() + "/" + ev.String()
				switch {
				case ok && cell.action == ar8 && requestor:
					name += "/requestor"
				case ok && cell.action == ar8:
					name += "/acceptor"
				case !requestor:
					continue
				}
				t.Run(name, func(t *testing.T) {
					checkCell(t, st, ev, requestor)
				})
			}
		}
	}
}

// recorder is a Handler that notes the indications.
type recorder struct {
	pdata, release bool
}

func (r *recorder) PData(*pdu.PDataTF) error { r.pdata = true; return nil }
func (r *recorder) Release()                 { r.release = true }
func (r *recorder) BeforeRead()              {}
func (r *recorder) ReadTimeout() error       { return ErrAborted }

func checkCell(t *testing.T, st state, ev event, requestor bool) {
	local, peer := net.Pipe()
	defer peer.Close()
	a := newConn(local, Config{ARTIM: time.Hour}, requestor)
	defer a.closeTransport(nil)
	a.st = st
	rec := &recorder{}
	a.h = rec
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
	if rec.pdata != e.pdata || rec.release != e.release {
		t.Errorf("P-DATA indication %v (want %v), release indication %v (want %v)", rec.pdata, e.pdata, rec.release, e.release)
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
	a := newConn(local, Config{ARTIM: time.Hour}, false)
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
		a := newConn(local, Config{ARTIM: 30 * time.Second}, false)
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

// TestNoAssociationRequest checks that Accept closes a connection on
// which no A-ASSOCIATE-RQ arrives within ARTIM, and not before.
func TestNoAssociationRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		done := make(chan error, 1)
		go func() {
			_, _, err := Accept(c2, Config{ARTIM: 10 * time.Second}, func(*pdu.AssociateRQ) (*pdu.AssociateAC, *pdu.AssociateRJ) {
				panic("no request was sent")
			})
			done <- err
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
		case err := <-done:
			if !errors.Is(err, ErrAborted) {
				t.Errorf("Accept = %v", err)
			}
		default:
			t.Fatal("connection still open after ARTIM expired")
		}
	})
}
