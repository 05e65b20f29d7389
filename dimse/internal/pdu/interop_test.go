package pdu_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// These tests talk to dcmtk over TCP on the loopback interface, with the
// codecs of this package and of cmdset and nothing else: a minimal acceptor
// and a minimal requestor written here. They check that what the codecs
// write is what a real peer accepts, beyond the captured fixtures. dcmtk is
// a test dependency of the project, so a missing tool fails the test rather
// than skipping it.

const (
	testImplementationUID = "2.25.200207140133547766352106520185541101953"
	uidVerification       = "1.2.840.10008.1.1"
	uidImplicitLE         = "1.2.840.10008.1.2"
	uidExplicitLE         = "1.2.840.10008.1.2.1"
	uidSecondaryCapture   = "1.2.840.10008.5.1.4.1.1.7"
)

// tool returns the path of a dcmtk program; a missing one fails the test
// under CI and skips it elsewhere.
func tool(t *testing.T, name string) string {
	t.Helper()
	testpeer.Need(t, name)
	p, err := testpeer.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// message is a DIMSE message as the acceptor below reassembles it.
type message struct {
	contextID byte
	cmd       *cmdset.Command
	data      []byte
	fragments int // data PDVs the data set came in
}

// acceptOne serves one association on ln: it accepts the presentation
// contexts for Verification and Secondary Capture with their first
// transfer syntax, rejects the others with an empty transfer syntax
// sub-item, announces maxLength, answers each message with what handle
// returns and the release with an A-RELEASE-RP.
func acceptOne(ln net.Listener, maxLength uint32, handle func(message) *cmdset.Command) error {
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		return err
	}
	r := pdu.NewReader(conn, pdu.DefaultMaxLength)
	p, err := r.Next()
	if err != nil {
		return err
	}
	rq, ok := p.(*pdu.AssociateRQ)
	if !ok {
		return fmt.Errorf("first PDU is %v", p.Type())
	}
	ac := &pdu.AssociateAC{
		ProtocolVersion:    pdu.ProtocolVersion,
		CalledAETitle:      rq.CalledAETitle,
		CallingAETitle:     rq.CallingAETitle,
		ApplicationContext: pdu.ApplicationContextName,
		UserInfo: pdu.UserInfo{
			MaxLength:                 maxLength,
			ImplementationClassUID:    testImplementationUID,
			ImplementationVersionName: "PACSD_TEST",
		},
	}
	for _, pc := range rq.PresentationContexts {
		res := pdu.PresentationContextAC{ID: pc.ID, Result: pdu.ResultAbstractSyntaxNotSupported}
		if pc.AbstractSyntax == uidVerification || pc.AbstractSyntax == uidSecondaryCapture {
			res.Result, res.TransferSyntax = pdu.ResultAcceptance, pc.TransferSyntaxes[0]
		}
		ac.PresentationContexts = append(ac.PresentationContexts, res)
	}
	out, err := ac.AppendTo(nil)
	if err != nil {
		return err
	}
	if _, err := conn.Write(out); err != nil {
		return err
	}
	r.SetMaxLength(maxLength)

	var cmdBuf, dataBuf []byte
	var cmd *cmdset.Command
	fragments := 0
	for {
		p, err := r.Next()
		if err != nil {
			return err
		}
		switch p := p.(type) {
		case *pdu.PDataTF:
			for _, v := range p.PDVs {
				if v.Command {
					cmdBuf = append(cmdBuf, v.Data...)
					if !v.Last {
						continue
					}
					if cmd, err = cmdset.Decode(cmdBuf); err != nil {
						return err
					}
					cmdBuf = cmdBuf[:0]
					if cmd.HasDataSet() {
						continue
					}
				} else {
					dataBuf = append(dataBuf, v.Data...)
					fragments++
					if !v.Last {
						continue
					}
				}
				rsp := handle(message{contextID: v.ContextID, cmd: cmd, data: bytes.Clone(dataBuf), fragments: fragments})
				dataBuf, fragments = dataBuf[:0], 0
				if err := sendCommand(conn, v.ContextID, rsp); err != nil {
					return err
				}
			}
		case *pdu.ReleaseRQ:
			out, _ := (&pdu.ReleaseRP{}).AppendTo(nil)
			_, err := conn.Write(out)
			return err
		default:
			return fmt.Errorf("unexpected %v", p.Type())
		}
	}
}

// sendCommand writes c as one command PDV, header and payload gathered
// with net.Buffers the way the association layer streams large data.
func sendCommand(conn net.Conn, contextID byte, c *cmdset.Command) error {
	payload, err := c.AppendTo(nil)
	if err != nil {
		return err
	}
	hdr, err := pdu.AppendPDataHeader(nil, contextID, true, true, len(payload))
	if err != nil {
		return err
	}
	bufs := net.Buffers{hdr, payload}
	_, err = bufs.WriteTo(conn)
	return err
}

// listen returns a listener on a free port of the loopback interface.
func listen(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func TestInteropEchoSCU(t *testing.T) {
	echoscu := tool(t, "echoscu")
	ln, port := listen(t)
	var got []message
	done := make(chan error, 1)
	go func() {
		done <- acceptOne(ln, 16384, func(m message) *cmdset.Command {
			got = append(got, m)
			return &cmdset.Command{
				CommandField:              cmdset.CEchoRSP,
				MessageIDBeingRespondedTo: m.cmd.MessageID,
				AffectedSOPClassUID:       m.cmd.AffectedSOPClassUID,
				CommandDataSetType:        cmdset.NoDataSet,
				Status:                    new(uint16(0)),
			}
		})
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, echoscu, "-v", "-aet", "ECHOSCU", "-aec", "PACSD", "--repeat", "2", "127.0.0.1", port).CombinedOutput()
	if err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
	if err := <-done; err != nil {
		t.Fatalf("acceptor: %v\n%s", err, out)
	}
	if len(got) != 2 || got[0].cmd.CommandField != cmdset.CEchoRQ || *got[1].cmd.MessageID != 2 {
		t.Errorf("received %+v", got)
	}
	if n := strings.Count(string(out), "Received Echo Response (Success)"); n != 2 {
		t.Errorf("echoscu saw %d successful responses:\n%s", n, out)
	}
}

// TestInteropStoreSCU receives a data set larger than the Maximum Length it
// announces, so that storescu must fragment it, and checks it arrives whole.
func TestInteropStoreSCU(t *testing.T) {
	storescu := tool(t, "storescu")
	const instance = "1.2.826.0.1.3680043.2.1125.9.1"
	dataSet := explicitLE(
		element(0x0008, 0x0016, "UI", []byte(uidSecondaryCapture+"\x00")),
		element(0x0008, 0x0018, "UI", []byte(instance)),
		element(0x0008, 0x0060, "CS", []byte("OT")),
		element(0x0010, 0x0010, "PN", []byte("Doe^Jane")),
		element(0x0010, 0x0020, "LO", []byte("PID0001 ")),
		element(0x0040, 0xA160, "UT", bytes.Repeat([]byte("0123456789"), 3000)),
	)
	file := filepath.Join(t.TempDir(), "sc.dcm")
	if err := os.WriteFile(file, part10(uidSecondaryCapture, instance, dataSet), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, port := listen(t)
	var got []message
	done := make(chan error, 1)
	go func() {
		done <- acceptOne(ln, 4096, func(m message) *cmdset.Command {
			got = append(got, m)
			return &cmdset.Command{
				CommandField:              cmdset.CStoreRSP,
				MessageIDBeingRespondedTo: m.cmd.MessageID,
				AffectedSOPClassUID:       m.cmd.AffectedSOPClassUID,
				AffectedSOPInstanceUID:    m.cmd.AffectedSOPInstanceUID,
				CommandDataSetType:        cmdset.NoDataSet,
				Status:                    new(uint16(0)),
			}
		})
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, storescu, "-v", "-xe", "-aet", "STORESCU", "-aec", "PACSD", "127.0.0.1", port, file).CombinedOutput()
	if err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	if err := <-done; err != nil {
		t.Fatalf("acceptor: %v\n%s", err, out)
	}
	if len(got) != 1 {
		t.Fatalf("received %d messages", len(got))
	}
	m := got[0]
	if m.cmd.CommandField != cmdset.CStoreRQ || m.cmd.AffectedSOPInstanceUID != instance || m.cmd.AffectedSOPClassUID != uidSecondaryCapture {
		t.Errorf("command %+v", m.cmd)
	}
	if m.fragments < 8 {
		t.Errorf("the data set came in %d fragments; a Maximum Length of 4096 should have split it more", m.fragments)
	}
	if !bytes.Equal(m.data, dataSet) {
		t.Errorf("received a data set of %d bytes that differs from the %d sent", len(m.data), len(dataSet))
	}
	if !strings.Contains(string(out), "Received Store Response (Success)") {
		t.Errorf("storescu did not see success:\n%s", out)
	}
}

// TestInteropStoreSCP is the other direction: a requestor built on the
// codecs negotiates with storescp and runs a C-ECHO.
func TestInteropStoreSCP(t *testing.T) {
	storescp := tool(t, "storescp")
	// storescp needs a port number; take a free one and release it.
	ln, port := listen(t)
	ln.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, storescp, "-aet", "STORESCP", "--output-directory", t.TempDir(), port)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err = net.Dial("tcp", "127.0.0.1:"+port); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("storescp did not listen: %v\n%s", err, log.String())
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}

	rq := &pdu.AssociateRQ{
		ProtocolVersion:    pdu.ProtocolVersion,
		CalledAETitle:      "STORESCP",
		CallingAETitle:     "PACSD",
		ApplicationContext: pdu.ApplicationContextName,
		PresentationContexts: []pdu.PresentationContextRQ{
			{ID: 1, AbstractSyntax: uidVerification, TransferSyntaxes: []string{uidExplicitLE, uidImplicitLE}},
			{ID: 3, AbstractSyntax: "1.2.840.10008.5.1.4.1.2.2.1", TransferSyntaxes: []string{uidImplicitLE}},
		},
		UserInfo: pdu.UserInfo{
			MaxLength:                 32768,
			ImplementationClassUID:    testImplementationUID,
			ImplementationVersionName: "PACSD_TEST",
			AsyncOpsWindow:            &pdu.AsyncOpsWindow{MaxOpsInvoked: 1, MaxOpsPerformed: 1},
			Unknown:                   [][]byte{{0x70, 0, 0, 2, 'o', 'k'}},
		},
	}
	out, err := rq.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	r := pdu.NewReader(conn, pdu.DefaultMaxLength)
	p, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	ac, ok := p.(*pdu.AssociateAC)
	if !ok {
		t.Fatalf("storescp answered %#v\n%s", p, log.String())
	}
	want := []pdu.PresentationContextAC{
		{ID: 1, Result: pdu.ResultAcceptance, TransferSyntax: uidExplicitLE},
		{ID: 3, Result: pdu.ResultAbstractSyntaxNotSupported, TransferSyntax: uidImplicitLE},
	}
	if fmt.Sprint(ac.PresentationContexts) != fmt.Sprint(want) {
		t.Errorf("presentation contexts %+v, want %+v", ac.PresentationContexts, want)
	}
	if ac.UserInfo.MaxLength == 0 || ac.UserInfo.ImplementationClassUID == "" {
		t.Errorf("user information %+v", ac.UserInfo)
	}

	// The command set is always Implicit VR Little Endian, whatever the
	// context's transfer syntax.
	echo := &cmdset.Command{
		CommandField:        cmdset.CEchoRQ,
		MessageID:           new(uint16(42)),
		AffectedSOPClassUID: uidVerification,
		CommandDataSetType:  cmdset.NoDataSet,
	}
	if err := sendCommand(conn, 1, echo); err != nil {
		t.Fatal(err)
	}
	p, err = r.Next()
	if err != nil {
		t.Fatal(err)
	}
	pd, ok := p.(*pdu.PDataTF)
	if !ok || len(pd.PDVs) != 1 || !pd.PDVs[0].Command || !pd.PDVs[0].Last {
		t.Fatalf("storescp answered %#v", p)
	}
	rsp, err := cmdset.Decode(pd.PDVs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if rsp.CommandField != cmdset.CEchoRSP || rsp.Status == nil || *rsp.Status != 0 ||
		rsp.MessageIDBeingRespondedTo == nil || *rsp.MessageIDBeingRespondedTo != 42 {
		t.Errorf("C-ECHO-RSP %+v", rsp)
	}

	out, _ = (&pdu.ReleaseRQ{}).AppendTo(nil)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	if p, err := r.Next(); err != nil || p.Type() != pdu.TypeReleaseRP {
		t.Fatalf("release answered with %v, %v", p, err)
	}
	// PS3.8 leaves closing the connection to the requestor once the
	// A-RELEASE-RP arrives; the deferred Close does it.
}

// element encodes a data element in Explicit VR Little Endian, padding the
// value to even length with a space (or leaving the NUL a UID brings).
func element(group, elem uint16, vr string, v []byte) []byte {
	if len(v)%2 == 1 {
		v = append(v, ' ')
	}
	b := binary.LittleEndian.AppendUint16(nil, group)
	b = binary.LittleEndian.AppendUint16(b, elem)
	b = append(b, vr...)
	switch vr {
	case "OB", "OW", "SQ", "UN", "UT":
		b = append(b, 0, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	default:
		b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	}
	return append(b, v...)
}

func explicitLE(elems ...[]byte) []byte { return bytes.Join(elems, nil) }

// part10 wraps an Explicit VR Little Endian data set in a DICOM file (PS3.10).
func part10(class, instance string, dataSet []byte) []byte {
	uid := func(s string) []byte {
		if len(s)%2 == 1 {
			s += "\x00"
		}
		return []byte(s)
	}
	meta := explicitLE(
		element(0x0002, 0x0001, "OB", []byte{0, 1}),
		element(0x0002, 0x0002, "UI", uid(class)),
		element(0x0002, 0x0003, "UI", uid(instance)),
		element(0x0002, 0x0010, "UI", uid(uidExplicitLE)),
		element(0x0002, 0x0012, "UI", uid(testImplementationUID)),
	)
	b := make([]byte, 128)
	b = append(b, "DICM"...)
	b = append(b, element(0x0002, 0x0000, "UL", binary.LittleEndian.AppendUint32(nil, uint32(len(meta))))...)
	b = append(b, meta...)
	return append(b, dataSet...)
}
