package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
)

// An instance's object keeps the bytes received; what the index says it
// is served as (index.Instance.Amended: an issuer given at ingest,
// corrections) is written over its header on the way out, pixel data
// streamed unchanged, with an item of Original Attributes Sequence
// (0400,0561) that records the values replaced, as PS3.3 C.12.1 has it.
// An amendment that changes nothing the object holds leaves the object
// served as it is, byte for byte.

// edit is what serving an instance changes of its stored header.
type edit struct {
	// set holds the elements written in place of the stored ones, the
	// Original Attributes Sequence among them.
	set *dicom.Dataset
	// amendment writes set over the data set, encoded once for every
	// time the instance is served.
	amendment *dicom.Amendment
}

// editCache remembers the edits of the instances served lately, by
// object and amendment, both of which never change under their names: a
// viewer reads a series again and again, and each edit costs a read of
// the index and of a JSON header. It keeps the two latest generations of
// at most editCacheSize edits each.
type editCache struct {
	mu       sync.Mutex
	cur, old map[string]*edit
}

const editCacheSize = 4096

func (c *editCache) get(k string) (*edit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cur[k]; ok {
		return e, true
	}
	e, ok := c.old[k]
	return e, ok
}

func (c *editCache) put(k string, e *edit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= editCacheSize || c.cur == nil {
		c.old, c.cur = c.cur, make(map[string]*edit, editCacheSize)
	}
	c.cur[k] = e
}

// editOf returns how an instance is served, from the header the index
// keeps (its metadata document); nil when as stored.
func (s *Service) editOf(ctx context.Context, in *index.Instance) (*edit, error) {
	if in.Amended == nil || len(in.Amended.Elements) == 0 {
		return nil, nil
	}
	doc, err := in.Amended.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("archive: amendments of %s: %w", in.SOPInstanceUID, err)
	}
	k := in.Key + "\x00" + modifiedAt(in) + "\x00" + string(doc)
	if e, ok := s.edits.get(k); ok {
		return e, nil
	}
	e, err := s.newEdit(ctx, in)
	if err != nil {
		return nil, err
	}
	s.edits.put(k, e)
	return e, nil
}

// newEdit computes how an instance is served (see editOf).
func (s *Service) newEdit(ctx context.Context, in *index.Instance) (*edit, error) {
	md, err := s.storedMetadata(ctx, in)
	if err != nil {
		return nil, err
	}
	stored, err := topElements(md.JSON, in.Amended, tag.SpecificCharacterSet, tag.OriginalAttributesSequence)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoMetadata, in.SOPInstanceUID, err)
	}
	var set, modified dicom.Dataset
	coerced := true
	for _, e := range in.Amended.Elements {
		old, had := stored.Find(e.Tag)
		if had && sameValue(old, &e) || !had && len(e.Values) == 0 && len(e.Items) == 0 {
			continue
		}
		set.Elements = append(set.Elements, e)
		if had {
			modified.Elements = append(modified.Elements, *old)
		} else {
			// An attribute the object lacked is recorded empty.
			modified.Elements = append(modified.Elements, dicom.Element{Tag: e.Tag, VR: e.VR})
		}
		coerced = coerced && !had && e.Tag == tag.IssuerOfPatientID
	}
	if len(set.Elements) == 0 {
		return nil, nil
	}
	reason := "CORRECT"
	if coerced {
		reason = "COERCE" // an issuer given to an object without one
	}
	// Each item of Original Attributes Sequence records one change.
	record := func(modified *dicom.Dataset) *dicom.Dataset {
		return &dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.ModifiedAttributesSequence, VR: "SQ", Items: []*dicom.Dataset{modified}},
			{Tag: tag.SourceOfPreviousValues, VR: "LO"},
			{Tag: tag.AttributeModificationDateTime, VR: "DT", Values: []string{modifiedAt(in)}},
			{Tag: tag.ModifyingSystem, VR: "LO", Values: []string{s.cfg.AETitle}},
			{Tag: tag.ReasonForTheAttributeModification, VR: "CS", Values: []string{reason}},
		}}
	}
	oas := dicom.Element{Tag: tag.OriginalAttributesSequence, VR: "SQ"}
	if prev, ok := stored.Find(tag.OriginalAttributesSequence); ok {
		oas.Items = append(oas.Items, prev.Items...)
	}
	oas.Items = append(oas.Items, record(&modified))
	charsets := stored.Strings(tag.SpecificCharacterSet)
	if needsUTF8(charsets, &set, oas) {
		// A value the data set's character set cannot hold: the header
		// is served in UTF-8, its text converted on the way out (see
		// dicom.Amend). The character set it had is recorded in an
		// item of its own, which holds no other text: in the item of
		// the values, it would apply to them, which are in UTF-8 now.
		set.Elements = append(set.Elements, dicom.Element{Tag: tag.SpecificCharacterSet, VR: "CS", Values: []string{dicom.CharsetUTF8}})
		old := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.SpecificCharacterSet, VR: "CS", Values: charsets}}}
		oas.Items = append(oas.Items, record(old))
	}
	set.Elements = append(set.Elements, oas)
	a, err := dicom.NewAmendment(&set, strings.Join(charsets, `\`))
	if err != nil {
		return nil, fmt.Errorf("archive: amendments of %s: %w", in.SOPInstanceUID, err)
	}
	return &edit{set: &set, amendment: a}, nil
}

// needsUTF8 reports whether the elements of set hold a value that the
// character set of a data set, its Specific Character Set values, cannot
// write.
func needsUTF8(charsets []string, set *dicom.Dataset, more ...dicom.Element) bool {
	if len(charsets) == 1 && strings.TrimSpace(charsets[0]) == dicom.CharsetUTF8 {
		return false
	}
	all := &dicom.Dataset{Elements: append(slices.Clone(set.Elements), more...)}
	return dicom.ResponseCharset(charsets, all) == dicom.CharsetUTF8
}

// modifiedAt returns, as Attribute Modification DateTime has it, when an
// instance's amendment was made: the time of the correction the index
// records, or of the instance's reception for an issuer given at ingest.
// It is the index's, never the time of serving, so that an instance is
// served the same, byte for byte, for as long as its amendment stands.
func modifiedAt(in *index.Instance) string {
	at := in.AmendedAt
	if at.IsZero() {
		at = in.ReceivedAt
	}
	return at.UTC().Format("20060102150405.000000") + "+0000"
}

// sameValue reports whether two elements hold the same value.
func sameValue(a, b *dicom.Element) bool {
	x, err1 := (&dicom.Dataset{Elements: []dicom.Element{{Tag: a.Tag, VR: b.VR, Values: trimmed(a.Values), Items: a.Items}}}).MarshalJSON()
	y, err2 := (&dicom.Dataset{Elements: []dicom.Element{{Tag: b.Tag, VR: b.VR, Values: trimmed(b.Values), Items: b.Items}}}).MarshalJSON()
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func trimmed(vs []string) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, strings.TrimSpace(v))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// topElements decodes, of a DICOM JSON object, the top-level elements
// with the tags of want and the extra tags given.
func topElements(doc []byte, want *dicom.Dataset, extra ...tag.Tag) (*dicom.Dataset, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(doc, &all); err != nil {
		return nil, err
	}
	sub := map[string]json.RawMessage{}
	pick := func(t tag.Tag) {
		if v, ok := all[t.Hex()]; ok {
			sub[t.Hex()] = v
		}
	}
	for _, e := range want.Elements {
		pick(e.Tag)
	}
	for _, t := range extra {
		pick(t)
	}
	b, err := json.Marshal(sub)
	if err != nil {
		return nil, err
	}
	return dicom.ParseJSON(b)
}

// amendJSON returns a header as DICOM JSON with the elements of e in
// place of its own.
func amendJSON(doc []byte, e *edit) ([]byte, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(doc, &all); err != nil {
		return nil, err
	}
	for _, el := range e.set.Elements {
		b, err := (&dicom.Dataset{Elements: []dicom.Element{el}}).MarshalJSON()
		if err != nil {
			return nil, err
		}
		var one map[string]json.RawMessage
		if err := json.Unmarshal(b, &one); err != nil {
			return nil, err
		}
		all[el.Tag.Hex()] = one[el.Tag.Hex()]
	}
	return json.Marshal(all) // keys in order: hexadecimal tags sort as text
}

// objectReaders hold the buffers the objects of amended instances are
// read through, which the rest of each is read from in place (see
// Amendment.Head): a viewer reads a series an instance after another.
var objectReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// openAmended is OpenDataset for an instance served with the edit e.
// The header is rewritten at once, into memory, and the rest is read
// from the object by the reader's caller: no goroutine, no pipe. A
// header that outgrows maxHeldHead, or a data set rewritten whole (a
// deflated one, one whose text is converted) longer than that, is
// rewritten again from the start, streamed through a pipe instead.
func (s *Service) openAmended(ctx context.Context, in *index.Instance, ts string, e *edit) (dicom.FileMeta, io.ReadCloser, error) {
	from, to, encapsulated, err := amendSyntaxes(in, ts)
	if err != nil {
		return dicom.FileMeta{}, nil, err
	}
	open := func() (dicom.FileMeta, *bufio.Reader, func() error, error) {
		obj, err := s.Open(ctx, in)
		if err != nil {
			return dicom.FileMeta{}, nil, nil, err
		}
		br := objectReaders.Get().(*bufio.Reader)
		br.Reset(obj)
		release := func() error {
			br.Reset(nil)
			objectReaders.Put(br)
			return obj.Close()
		}
		fm, _, err := dicom.ReadFileMeta(br)
		if err != nil {
			release()
			return dicom.FileMeta{}, nil, nil, fmt.Errorf("archive: object %s: %w", in.Key, err)
		}
		// What Compress keeps of the original is pacsd's own, not served.
		if fm.PrivateInformationCreatorUID == CompressCreatorUID {
			fm.PrivateInformationCreatorUID, fm.PrivateInformation = "", nil
		}
		return fm, br, release, nil
	}
	fm, br, release, err := open()
	if err != nil {
		return dicom.FileMeta{}, nil, err
	}
	head := &heldHead{}
	rest, err := e.amendment.Head(head, br, from, to, encapsulated)
	switch {
	case err == nil:
		var r io.Reader = bytes.NewReader(head.b)
		if rest != nil {
			r = io.MultiReader(r, rest)
		}
		return fm, &datasetReader{Reader: filledReader{r}, close: release}, nil
	case !errors.Is(err, errHeadTooLong):
		release()
		return dicom.FileMeta{}, nil, fmt.Errorf("archive: amending %s: %w", in.SOPInstanceUID, err)
	}
	release()
	if fm, br, release, err = open(); err != nil {
		return dicom.FileMeta{}, nil, err
	}
	return fm, amended(br, from, to, encapsulated, e, release), nil
}

// maxHeldHead bounds the rewritten header openAmended holds in memory.
const maxHeldHead = 256 << 10

var errHeadTooLong = errors.New("archive: amended header too long to hold")

// heldHead holds a rewritten header of up to maxHeldHead bytes.
type heldHead struct{ b []byte }

func (h *heldHead) Write(p []byte) (int, error) {
	if len(h.b)+len(p) > maxHeldHead {
		return 0, errHeadTooLong
	}
	h.b = append(h.b, p...)
	return len(p), nil
}

// filledReader fills each buffer it is given, to the end of r, so that
// a header and the start of the pixel data go out in one write.
type filledReader struct{ r io.Reader }

func (f filledReader) Read(p []byte) (int, error) {
	n, err := io.ReadFull(f.r, p)
	if err == io.ErrUnexpectedEOF {
		err = nil // the end, which the next Read reports
	}
	return n, err
}

// amendSyntaxes returns the syntaxes an amended data set of in is read
// and written in, for syntax ts.
func amendSyntaxes(in *index.Instance, ts string) (from, to uid.TransferSyntax, encapsulated bool, err error) {
	from, ok := uid.LookupTransferSyntax(in.TransferSyntaxUID)
	if !ok {
		return from, to, false, fmt.Errorf("archive: %s: transfer syntax %q is unknown", in.SOPInstanceUID, in.TransferSyntaxUID)
	}
	to, _ = uid.LookupTransferSyntax(ts)
	if encapsulated = !dicom.Transcodable(in.TransferSyntaxUID); encapsulated {
		// A compressed syntax's data set is explicit VR little endian
		// around its pixel data's fragments.
		from, _ = uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
		to = from
	}
	return from, to, encapsulated, nil
}

// amended returns a reader of a data set read from br in syntax from,
// in syntax to with e written over it, the header rewritten in a
// goroutine, through a pipe. closeObj is called once the reader is
// closed and nothing reads br any more.
func amended(br *bufio.Reader, from, to uid.TransferSyntax, encapsulated bool, e *edit, closeObj func() error) io.ReadCloser {
	// The header is rewritten in a goroutine, through a pipe; the rest,
	// pixel data mostly, is read from the object by the reader's caller
	// itself, without a copy more or a trip through the pipe.
	pr, pw := io.Pipe()
	r := &amendedReader{head: pr, done: make(chan struct{}), closeObj: closeObj}
	go func() {
		defer close(r.done)
		rest, err := e.amendment.Head(pw, br, from, to, encapsulated)
		r.rest = rest
		pw.CloseWithError(err)
	}()
	return r
}

// amendedReader reads an amended data set: the header Amendment.Head
// writes to a pipe, then the rest it leaves, read from the object. Each Read
// fills p, so that the caller's large buffer goes out in large writes.
type amendedReader struct {
	head     *io.PipeReader
	done     chan struct{} // closed when Head has returned
	rest     io.Reader     // Head's, read once done is closed
	closeObj func() error
}

func (r *amendedReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		var m int
		var err error
		if r.head != nil {
			m, err = r.head.Read(p[n:])
			if err == io.EOF {
				<-r.done
				r.head, err = nil, nil
				if r.rest == nil {
					err = io.EOF
				}
			}
		} else {
			m, err = r.rest.Read(p[n:])
		}
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (r *amendedReader) Close() error {
	if r.head != nil {
		r.head.Close() // ends Head at its next write
	}
	<-r.done
	return r.closeObj()
}
