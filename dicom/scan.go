package dicom

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// Limits bound the memory one data set's header takes, whatever the
// sender claims. The zero value means the defaults.
type Limits struct {
	// Identify is the most bytes read before the identifying UIDs are
	// known (default 16 MiB). They are held in memory until then.
	Identify int
	// Header is the most memory, in bytes, the header takes (default
	// 32 MiB): the bytes of its values kept for decoding, plus a fixed
	// estimate of what each element, item and located value costs once
	// decoded, so that a data set of many tiny elements is bounded as
	// one of a few large ones. A top-level element that does not fit is
	// left out of the header and listed in Header.Omitted; when not even
	// that list fits, the header ends there and Header.Err wraps
	// ErrHeaderTooLarge.
	Header int
	// Inline is the largest binary value kept in memory (default 1 KiB);
	// larger ones are only located.
	Inline int
	// Depth is the deepest nesting of sequences accepted (default 32).
	Depth int
}

func (l Limits) withDefaults() Limits {
	if l.Identify <= 0 {
		l.Identify = 16 << 20
	}
	if l.Header <= 0 {
		l.Header = 32 << 20
	}
	if l.Inline <= 0 {
		l.Inline = 1 << 10
	}
	if l.Depth <= 0 {
		l.Depth = 32
	}
	return l
}

// ErrTooLarge reports that the identifying UIDs were not found within
// Limits.Identify bytes.
var ErrTooLarge = errors.New("dicom: identifying attributes not found within the limit")

// ErrHeaderTooLarge reports a header that outgrew Limits.Header so far
// that elements were left out without being listed in Header.Omitted.
var ErrHeaderTooLarge = errors.New("dicom: header larger than the limit")

// Identity is what files an instance: its class and the UIDs of the
// instance, its series and its study, as found in the data set.
type Identity struct {
	SOPClassUID       string
	SOPInstanceUID    string
	StudyInstanceUID  string
	SeriesInstanceUID string
}

func (id *Identity) complete() bool {
	return id.SOPClassUID != "" && id.SOPInstanceUID != "" && id.StudyInstanceUID != "" && id.SeriesInstanceUID != ""
}

func (id *Identity) capture(t tag.Tag, v []byte) {
	switch t {
	case tag.SOPClassUID:
		id.SOPClassUID = uid.Trim(string(v))
	case tag.SOPInstanceUID:
		id.SOPInstanceUID = uid.Trim(string(v))
	case tag.StudyInstanceUID:
		id.StudyInstanceUID = uid.Trim(string(v))
	case tag.SeriesInstanceUID:
		id.SeriesInstanceUID = uid.Trim(string(v))
	}
}

// Header is what a Scanner learned of a whole data set.
type Header struct {
	Dataset *Dataset
	// PixelData locates the top-level Pixel Data, if there is one.
	PixelData *PixelData
	// Length is the length of the data set in bytes; of the inflated
	// data set, for a deflated transfer syntax, whose offsets all count
	// bytes of the inflated data set (see InflatedObject).
	Length int64
	// Omitted lists top-level elements left out of Dataset because they
	// did not fit within Limits.Header, as many as fit in it too.
	Omitted []tag.Tag
	// Err, when not nil, says why the data set could not be read to its
	// end; Dataset then holds what came before. It wraps ErrMalformed
	// when the data set itself is at fault, and ErrTruncated as well when
	// the data set ended before its structure did (see ErrTruncated).
	// Truncation is reported here only: the reader returned by Rest
	// passes the source's bytes and its io.EOF on unchanged.
	Err error
}

// A Scanner reads a data set stream once, for two readers: the caller,
// who keeps every byte as it is, and the header decoder. It works in two
// steps so that the caller can choose where to keep the bytes from the
// identity of the instance:
//
//  1. Identify reads until the identifying UIDs are known, holding the
//     bytes it read; Prefix returns them.
//  2. The caller reads the rest of the stream from Rest, and Header then
//     returns the whole header.
//
// The header is decoded in a goroutine fed from Rest; memory stays within
// Limits whatever the size of the data set.
type Scanner struct {
	src    io.Reader
	prefix bytes.Buffer
	lim    Limits
	sw     switchReader
	w      *walker

	identified bool
	more       bool
	idErr      error // returned by Identify
	walkErr    error // met after the identity was complete; for Header

	rest     *restReader
	done     chan struct{}
	header   Header
	stopOnce sync.Once
}

// NewScanner returns a Scanner of a data set (no File Meta Information)
// encoded in transfer syntax ts, read from r.
func NewScanner(r io.Reader, ts uid.TransferSyntax, lim Limits) *Scanner {
	s := &Scanner{src: r, lim: lim.withDefaults()}
	s.sw.r = &recorder{s: s}
	var view io.Reader = &s.sw
	if ts.Deflated {
		view = inflater{flate.NewReader(view)}
	}
	s.w = &walker{
		elementReader: elementReader{r: bufio.NewReaderSize(view, 64<<10)},
		top:           syntax{explicit: ts.ExplicitVR, bigEndian: ts.BigEndian},
		topLevel:      newLevel(),
		limit:         -1,
		deflated:      ts.Deflated,
		lim:           s.lim,
		pixelIdx:      -1,
	}
	if _, err := rand.Read(s.w.nonce[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return s
}

// recorder keeps the bytes read from the source before the identity is
// known, up to Limits.Identify.
type recorder struct{ s *Scanner }

func (r *recorder) Read(p []byte) (int, error) {
	s := r.s
	if s.prefix.Len() >= s.lim.Identify {
		return 0, fmt.Errorf("%w: %d bytes", ErrTooLarge, s.lim.Identify)
	}
	if room := s.lim.Identify - s.prefix.Len(); len(p) > room {
		p = p[:room]
	}
	n, err := s.src.Read(p)
	s.prefix.Write(p[:n])
	return n, err
}

// switchReader lets the walker's buffered reader move from the recorder to
// the pipe fed by Rest without losing what it has buffered.
type switchReader struct{ r io.Reader }

func (s *switchReader) Read(p []byte) (int, error) { return s.r.Read(p) }

// Identify reads until the identifying UIDs are known: up to the first
// top-level element after Series Instance UID (0020,000E), or the end of
// the data set. Empty fields of the Identity are absent from the data set.
// The error wraps ErrMalformed (and ErrTruncated if the data set ends
// before the identity is complete), ErrTooLarge, or the source's own
// error. Damage met after the identity is complete is left to Header.
func (s *Scanner) Identify() (Identity, error) {
	if !s.identified {
		s.identified = true
		s.more, s.idErr = s.w.walkUntil(tag.SeriesInstanceUID)
		if s.idErr == nil && s.more {
			s.idErr = s.w.walkBuffered()
		}
		if s.idErr != nil && s.w.id.complete() && !errors.Is(s.idErr, ErrTooLarge) {
			// The instance can be filed; the damage is the header's.
			s.walkErr, s.idErr = s.idErr, nil
		}
	}
	return s.w.id, s.idErr
}

// Prefix returns the bytes Identify read: the data set's first bytes.
func (s *Scanner) Prefix() []byte { return s.prefix.Bytes() }

// Rest returns a reader of the data set's bytes after Prefix. Reading it
// to its end completes the header; call Close instead if it will not be
// read to its end. Call Identify first.
func (s *Scanner) Rest() io.Reader {
	if s.rest != nil {
		return s.rest
	}
	pr, pw := io.Pipe()
	s.rest = &restReader{src: s.src, pw: pw, skip: s.w.deferred}
	s.sw.r = pr
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		err := s.idErr
		if err == nil {
			err = s.walkErr
		}
		if err == nil {
			_, err = s.w.walkUntil(0xFFFFFFFF)
		}
		if err == nil && s.rest.skip > 0 {
			// The source ended inside a value the walker left to it.
			err = truncated("data set ends %d bytes short of the end of a bulk value", s.rest.skip)
		}
		// Keep Rest flowing whatever the walker made of the data.
		if _, cerr := io.Copy(io.Discard, pr); err == nil && cerr != nil && !errors.Is(cerr, errStopped) {
			err = cerr
		}
		s.header = s.w.result(err)
	}()
	return s.rest
}

var errStopped = errors.New("dicom: scan stopped")

// Close ends the header decoding when Rest will not be read to its end.
func (s *Scanner) Close() {
	if s.rest != nil {
		s.stopOnce.Do(func() { s.rest.pw.CloseWithError(errStopped) })
	}
}

// Header waits for the end of the data set and returns its header. Call it
// after reading Rest to its end (or after Close).
func (s *Scanner) Header() Header {
	if s.rest == nil {
		s.Rest()
		s.Close()
	}
	<-s.done
	return s.header
}

// restReader passes the source through to the caller and, on the side, to
// the walker.
type restReader struct {
	src io.Reader
	pw  *io.PipeWriter
	n   int64
	// skip counts the bytes still to pass on without the walker (see
	// walker.deferred).
	skip int64
}

func (r *restReader) Read(p []byte) (int, error) {
	n, err := r.src.Read(p)
	if n > 0 {
		r.n += int64(n)
		k := int(min(r.skip, int64(n)))
		r.skip -= int64(k)
		// The walker drains the pipe to its end whatever happens, so
		// this returns once it has taken the bytes; after Close it
		// returns at once.
		if k < n {
			r.pw.Write(p[k:n])
		}
	}
	switch {
	case err == io.EOF:
		r.pw.Close()
	case err != nil:
		r.pw.CloseWithError(err)
	}
	return n, err
}

func (w *walker) result(err error) Header {
	h := Header{PixelData: w.pixel, Length: w.pos, Omitted: w.omitted, Err: err}
	ds, derr := decode(w.out, w.bulk, w.nonce, w.pixelIdx)
	h.Dataset = ds
	switch {
	case h.Err != nil:
	case derr != nil:
		h.Err = fmt.Errorf("%w: %v", ErrMalformed, derr)
	case w.full:
		h.Err = fmt.Errorf("%w: elements left out beyond %d bytes, after %d listed in Omitted", ErrHeaderTooLarge, w.lim.Header, len(w.omitted))
	}
	return h
}
