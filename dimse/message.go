package dimse

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/pacsd/pacsd/dimse/internal/cmdset"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
)

// A DIMSE message is a command set followed, when the command says so, by
// a data set, each carried in PDV fragments on one presentation context
// (PS3.7 §6.3.1, PS3.8 Annex E). The assembler puts the fragments of the
// P-DATA-TF PDUs the reader goroutine receives back together: the command
// in memory (it is small), the data set streamed to a sink as it arrives.

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
}

// onPData is the P-DATA indication: it reassembles messages and hands
// each to onMessage as soon as its command is complete.
func (a *Association) onPDataMessages(p *pdu.PDataTF) error {
	m := &a.asm
	for _, v := range p.PDVs {
		pc, ok := a.contexts[v.ContextID]
		if !ok || !pc.Accepted() {
			return protocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "P-DATA on presentation context %d, which is not accepted", v.ContextID)
		}
		if v.Command {
			if m.data != nil {
				return protocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "command fragment while the data set of the previous message is incomplete")
			}
			if len(m.cmd) > 0 && m.cmdPC != v.ContextID {
				return protocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "command fragments on presentation contexts %d and %d", m.cmdPC, v.ContextID)
			}
			if len(m.cmd)+len(v.Data) > maxCommandLength {
				return protocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "command set longer than %d bytes", maxCommandLength)
			}
			m.cmd = append(m.cmd, v.Data...)
			m.cmdPC = v.ContextID
			if !v.Last {
				continue
			}
			cmd, err := cmdset.Decode(m.cmd)
			m.cmd = m.cmd[:0]
			if err != nil {
				return protocolErrorf(pdu.AbortReasonInvalidPDUParameterValue, "undecodable command set: %v", err)
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
			return protocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "data set fragment without a command announcing it")
		}
		if v.ContextID != m.dataPC {
			return protocolErrorf(pdu.AbortReasonUnexpectedPDUParameter, "data set fragment on presentation context %d, its command on %d", v.ContextID, m.dataPC)
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
}

type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) finish(error)                {}

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
