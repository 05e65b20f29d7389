package dimse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
	"github.com/pacsd/pacsd/dimse/internal/ul"
)

// A DIMSE message is a command set followed, when the command says so, by
// a data set, each carried in PDV fragments on one presentation context
// (PS3.7 §6.3.1, PS3.8 Annex E). The assembler puts the fragments of the
// P-DATA-TF PDUs the reader goroutine receives back together: the command
// in memory (it is small), the data set streamed to a sink as it arrives.
// sendMessage does the reverse.

// sink receives the data set of a message, fragment by fragment.
type sink interface {
	// Write takes one fragment; the bytes are valid only during the call.
	Write(p []byte) (int, error)
	// finish is called after the last fragment, with nil, or with the
	// error that ended the association before it.
	finish(err error)
}

type assembler struct {
	cmd   []byte
	cmdPC byte
	data  sink // the sink of the data set in transit, if any
	// dataPC is the context of the data set in transit.
	dataPC byte
	// discard is true when the sink refused a write: the rest of the
	// data set is read and dropped.
	discard bool
	// inTransit is true while a message has started to arrive and not
	// ended, for the read deadline, which another goroutine may set.
	inTransit atomic.Bool
}

// onPData is the P-DATA indication: it reassembles messages and hands
// each to onMessage as soon as its command is complete.
func (a *Association) onPData(p *pdu.PDataTF) error {
	m := &a.asm
	defer func() { m.inTransit.Store(len(m.cmd) > 0 || m.data != nil) }()
	for _, v := range p.PDVs {
		pc, ok := a.contexts[v.ContextID]
		if !ok || !pc.Accepted() {
			return ul.ProtocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "P-DATA on presentation context %d, which is not accepted", v.ContextID)
		}
		if v.Command {
			if m.data != nil {
				return ul.ProtocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "command fragment while the data set of the previous message is incomplete")
			}
			if len(m.cmd) > 0 && m.cmdPC != v.ContextID {
				return ul.ProtocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "command fragments on presentation contexts %d and %d", m.cmdPC, v.ContextID)
			}
			if len(m.cmd)+len(v.Data) > maxCommandLength {
				return ul.ProtocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "command set longer than %d bytes", maxCommandLength)
			}
			m.cmd = append(m.cmd, v.Data...)
			m.cmdPC = v.ContextID
			if !v.Last {
				continue
			}
			cmd, err := cmdset.Decode(m.cmd)
			m.cmd = m.cmd[:0]
			if err != nil {
				return ul.ProtocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "undecodable command set: %v", err)
			}
			s, err := a.onMessage(cmd, pc)
			if err != nil {
				return err
			}
			if cmd.HasDataSet() {
				if s == nil {
					s = discardSink{}
				}
				m.data, m.dataPC, m.discard = s, v.ContextID, false
			}
			continue
		}
		if m.data == nil {
			return ul.ProtocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "data set fragment without a command announcing it")
		}
		if v.ContextID != m.dataPC {
			return ul.ProtocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "data set fragment on presentation context %d, its command on %d", v.ContextID, m.dataPC)
		}
		if !m.discard {
			if _, err := m.data.Write(v.Data); err != nil {
				// The receiver gave up on this data set; the
				// rest of it still has to be read off the wire.
				m.discard = true
			}
		}
		if v.Last {
			m.data.finish(nil)
			m.data = nil
		}
	}
	return nil
}

// abort ends a data set in transit when the association ends under it.
func (m *assembler) abort(err error) {
	if m.data != nil {
		m.data.finish(err)
		m.data = nil
	}
	m.inTransit.Store(false)
}

type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) finish(error)                {}

// drainSink drops a data set and closes its channel once the data set
// has been read whole, or the association has ended.
type drainSink struct{ done chan struct{} }

func (drainSink) Write(p []byte) (int, error) { return len(p), nil }
func (s drainSink) finish(error)              { close(s.done) }

// pipeSink streams a data set to a reader in another goroutine; Write
// returns once that reader has taken the fragment, so the connection is
// read no faster than the data set is consumed.
type pipeSink struct{ pw *io.PipeWriter }

func newPipe() (*io.PipeReader, *pipeSink) {
	pr, pw := io.Pipe()
	return pr, &pipeSink{pw}
}

func (s *pipeSink) Write(p []byte) (int, error) { return s.pw.Write(p) }

func (s *pipeSink) finish(err error) {
	if err == nil {
		s.pw.Close()
		return
	}
	s.pw.CloseWithError(err)
}

// bufferSink collects a small data set (a C-FIND identifier, say) in
// memory, up to a limit, and hands it over when complete.
type bufferSink struct {
	buf   bytes.Buffer
	limit int
	over  bool
	done  func(data []byte, err error)
}

var errDataSetTooLong = errors.New("dimse: data set longer than the limit for this message")

func (s *bufferSink) Write(p []byte) (int, error) {
	if s.buf.Len()+len(p) > s.limit {
		s.over = true
		return 0, errDataSetTooLong
	}
	return s.buf.Write(p)
}

func (s *bufferSink) finish(err error) {
	if err == nil && s.over {
		err = fmt.Errorf("%w (%d bytes)", errDataSetTooLong, s.limit)
	}
	s.done(s.buf.Bytes(), err)
}

// sendMessage sends a command and, if data is not nil, a data set read from
// data, on presentation context pc, in P-DATA-TF PDUs no longer than the
// peer accepts. It fails with ctx's error if ctx ends first; the
// association is then aborted, since a message cut short cannot be
// resumed.
func (a *Association) sendMessage(ctx context.Context, pc byte, cmd *cmdset.Command, data io.Reader) error {
	if data != nil {
		cmd.CommandDataSetType = cmdset.DataSetPresent
	} else {
		cmd.CommandDataSetType = cmdset.NoDataSet
	}
	enc, err := cmd.AppendTo(nil)
	if err != nil {
		return fmt.Errorf("dimse: encode %v: %w", cmd.CommandField, err)
	}
	stop := context.AfterFunc(ctx, func() { a.ul.SetWriteDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() && ctx.Err() != nil {
			a.Abort()
		}
	}()
	chunk := int(a.maxSend) - 6 // a PDV item header is 6 bytes
	if b, ok := data.(*bytes.Buffer); ok && len(enc) <= chunk && b.Len() <= chunk {
		// A small message (a C-FIND match, say) goes out as its two
		// P-DATA-TF PDUs in one write, without a copy buffer: a query
		// sends one per match.
		return ctxErr(ctx, a.sendSmall(pc, enc, b.Bytes()))
	}
	for off := 0; off < len(enc); off += chunk {
		end := min(off+chunk, len(enc))
		if err := a.sendPDV(pc, true, end == len(enc), enc[off:end]); err != nil {
			return ctxErr(ctx, err)
		}
	}
	if data == nil {
		return nil
	}
	buf := make([]byte, chunk)
	br := bufio.NewReaderSize(data, 64<<10)
	for {
		n, err := io.ReadFull(br, buf)
		last := false
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			last = true
		case err != nil:
			// The data set cannot be finished; the peer is waiting
			// for its last fragment, so only an abort ends this.
			a.Abort()
			return fmt.Errorf("dimse: read data set to send: %w", err)
		default:
			if _, perr := br.Peek(1); perr == io.EOF {
				last = true
			}
		}
		if err := a.sendPDV(pc, false, last, buf[:n]); err != nil {
			return ctxErr(ctx, err)
		}
		if last {
			return nil
		}
	}
}

func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// sendSmall sends a whole message, command and data set each in one
// PDV of its own P-DATA-TF PDU, in one write.
func (a *Association) sendSmall(pc byte, cmd, data []byte) error {
	h1, err := pdu.AppendPDataHeader(make([]byte, 0, 12), pc, true, true, len(cmd))
	if err != nil {
		return err
	}
	h2, err := pdu.AppendPDataHeader(make([]byte, 0, 12), pc, false, true, len(data))
	if err != nil {
		return err
	}
	return a.ul.Send(net.Buffers{h1, cmd, h2, data})
}

// sendPDV sends one P-DATA-TF PDU holding one PDV.
func (a *Association) sendPDV(pc byte, command, last bool, b []byte) error {
	hdr, err := pdu.AppendPDataHeader(make([]byte, 0, 12), pc, command, last, len(b))
	if err != nil {
		return err
	}
	return a.ul.Send(net.Buffers{hdr, b})
}
