package deid

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// ErrBurnedIn reports an instance whose Burned In Annotation (0028,0301)
// is YES: its pixels may show the patient's name, and this package does
// not clean pixels. Options.AllowBurnedIn lets it through.
var ErrBurnedIn = errors.New("deid: burned-in annotation in the pixel data")

// ErrUnsupported reports a data set this package cannot de-identify as
// it streams: a deflated transfer syntax, a header larger than the limit,
// or more than a little data after the pixel data.
var ErrUnsupported = errors.New("deid: unsupported")

// Options configure a Deidentifier.
type Options struct {
	// Key is the project key (--deid-key): the same original UID or
	// patient gets the same replacement under one key, and different
	// ones under another. At least 16 bytes.
	Key []byte
	// Profile defaults to BasicProfile().
	Profile *Profile
	// Mapping, if set, is told every replacement, so that an admin can
	// re-identify later.
	Mapping MappingStore
	// AllowBurnedIn lets instances with burned-in annotation through,
	// for routes configured to send them.
	AllowBurnedIn bool
	// MaxHeader bounds the bytes before Pixel Data held in memory
	// (default 16 MiB).
	MaxHeader int
}

// Deidentifier applies the Basic Application Level Confidentiality
// Profile. It is safe for concurrent use.
type Deidentifier struct {
	key     []byte
	profile Profile
	mapping MappingStore
	burned  bool
	maxHdr  int
}

// New returns a Deidentifier.
func New(opts Options) (*Deidentifier, error) {
	if len(opts.Key) < 16 {
		return nil, errors.New("deid: the project key must have at least 16 bytes")
	}
	p := BasicProfile()
	if opts.Profile != nil {
		p = *opts.Profile
	}
	for _, o := range p.Options {
		if o != ModifiedDates && o != CleanDescriptors {
			return nil, fmt.Errorf("%w: option %d", ErrUnsupported, o)
		}
	}
	if opts.MaxHeader <= 0 {
		opts.MaxHeader = 16 << 20
	}
	return &Deidentifier{key: append([]byte(nil), opts.Key...), profile: p, mapping: opts.Mapping, burned: opts.AllowBurnedIn, maxHdr: opts.MaxHeader}, nil
}

// Profile returns the profile d applies.
func (d *Deidentifier) Profile() Profile { return d.profile }

// mac returns HMAC-SHA256 of the parts under the project key.
func (d *Deidentifier) mac(kind string, parts ...string) []byte {
	h := hmac.New(sha256.New, d.key)
	h.Write([]byte(kind))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}

// UID returns the replacement of an original UID: a UID under the 2.25
// root (PS3.5 B.2) whose number is the first 128 bits of HMAC-SHA256 of
// the original under the project key.
func (d *Deidentifier) UID(original string) string {
	n := new(big.Int).SetBytes(d.mac("uid", original)[:16])
	return "2.25." + n.String()
}

// PatientID returns the pseudonym of a patient: the same for the same ID
// and issuer under one key.
func (d *Deidentifier) PatientID(id, issuer string) string {
	return "ANON-" + strings.ToUpper(hex.EncodeToString(d.mac("patient", issuer, id)[:10]))
}

// DateShift returns how far the dates of a patient move: between 1 and
// 3650 whole days back, the same for all the patient's studies, so that
// intervals between them are kept.
func (d *Deidentifier) DateShift(id, issuer string) int {
	return -1 - int(binary.BigEndian.Uint32(d.mac("dates", issuer, id))%3650)
}

// Result describes a de-identified instance.
type Result struct {
	// Original and Replaced identify the instance before and after.
	Original, Replaced dicom.Identity
	// PatientID is the pseudonym given to the patient.
	PatientID string
	// Mappings are the replacements made, as the MappingStore was told.
	Mappings []Mapping
}

// instance is the state of one data set's de-identification.
type instance struct {
	d        *Deidentifier
	shift    int // days
	scrub    *regexp.Regexp
	mappings map[Mapping]bool
	res      Result
}

// Header de-identifies a header held in memory (WADO-RS metadata, a
// C-FIND response) and returns the new one; ds is not changed. Binary
// values that are only located, not held, are written empty by
// dicom.Dataset.Encode; Rewrite carries them over.
func (d *Deidentifier) Header(ctx context.Context, ds *dicom.Dataset) (*dicom.Dataset, Result, error) {
	in, err := d.begin(ds)
	if err != nil {
		return nil, Result{}, err
	}
	out := in.dataset(ds, true)
	in.mark(out)
	if err := in.record(ctx); err != nil {
		return nil, Result{}, err
	}
	return out, in.res, nil
}

// begin checks ds and sets up what its de-identification needs.
func (d *Deidentifier) begin(ds *dicom.Dataset) (*instance, error) {
	if !d.burned && strings.EqualFold(strings.TrimSpace(ds.First(tag.BurnedInAnnotation)), "YES") {
		return nil, ErrBurnedIn
	}
	id, issuer := strings.TrimSpace(ds.First(tag.PatientID)), strings.TrimSpace(ds.First(tag.IssuerOfPatientID))
	in := &instance{d: d, shift: d.DateShift(id, issuer), mappings: map[Mapping]bool{}}
	in.res.Original = dicom.Identity{
		SOPClassUID: ds.First(tag.SOPClassUID), SOPInstanceUID: ds.First(tag.SOPInstanceUID),
		StudyInstanceUID: ds.First(tag.StudyInstanceUID), SeriesInstanceUID: ds.First(tag.SeriesInstanceUID),
	}
	in.res.PatientID = d.PatientID(id, issuer)
	in.addMapping(Mapping{Kind: KindPatient, Original: joinIssuer(id, issuer), Replacement: in.res.PatientID})
	in.scrub = identifyingWords(ds, d.profile)
	return in, nil
}

func joinIssuer(id, issuer string) string {
	if issuer == "" {
		return id
	}
	return id + "^^^" + issuer
}

func (in *instance) addMapping(m Mapping) {
	if !in.mappings[m] {
		in.mappings[m] = true
		in.res.Mappings = append(in.res.Mappings, m)
	}
}

func (in *instance) record(ctx context.Context) error {
	if in.d.mapping == nil || len(in.res.Mappings) == 0 {
		return nil
	}
	if err := in.d.mapping.Record(ctx, in.res.Mappings); err != nil {
		return fmt.Errorf("deid: mapping: %w", err)
	}
	return nil
}

// dataset returns the de-identified copy of ds.
func (in *instance) dataset(ds *dicom.Dataset, top bool) *dicom.Dataset {
	out := &dicom.Dataset{}
	for i := range ds.Elements {
		e := &ds.Elements[i]
		if ne, keep := in.element(e, top); keep {
			out.Elements = append(out.Elements, ne)
		}
	}
	return out
}

// element returns the de-identified copy of e, or false to remove it.
func (in *instance) element(e *dicom.Element, top bool) (dicom.Element, bool) {
	t := e.Tag
	if t.Element() == 0x0000 {
		return dicom.Element{}, false // group lengths change; Encode drops them
	}
	if top && t == tag.PatientID {
		return dicom.Element{Tag: t, VR: "LO", Values: []string{in.res.PatientID}}, true
	}
	a := in.d.profile.action(t)
	if a != Keep && a != Remove {
		e = knownVR(e)
	}
	out := dicom.Element{Tag: t, VR: e.VR}
	switch a {
	case Remove:
		return out, false
	case Keep:
		out.Values, out.Binary = e.Values, e.Binary
		out.Items = in.items(e.Items)
		return out, true
	case Zero:
		if e.Binary != nil {
			out.Binary = &dicom.Binary{Offset: -1}
		}
		return out, true
	case Replace:
		out.Values = make([]string, len(e.Values))
		for i, v := range e.Values {
			out.Values[i] = in.uid(v)
		}
		out.Items = in.items(e.Items)
		out.Binary = e.Binary
		return out, true
	case Clean:
		switch {
		case e.VR == "SQ":
			out.Items = in.items(e.Items)
		case e.VR == "DA" || e.VR == "DT":
			out.Values = make([]string, len(e.Values))
			for i, v := range e.Values {
				out.Values[i] = shiftDate(v, in.shift)
			}
		case e.VR == "TM":
			// Whole days move; times of day stay.
			out.Values = e.Values
		case isText(e.VR):
			for _, v := range e.Values {
				out.Values = append(out.Values, in.clean(v))
			}
		default:
			out.Values, out.Binary = e.Values, e.Binary
		}
		return out, true
	}
	// Dummy.
	if e.VR == "SQ" {
		// The items stay, de-identified attribute by attribute: the
		// dummy value of a sequence is its cleaned content.
		out.Items = in.items(e.Items)
		return out, true
	}
	if e.VR == "UI" {
		for _, v := range e.Values {
			out.Values = append(out.Values, in.uid(v))
		}
		return out, true
	}
	if e.Binary != nil || binaryVR(e.VR) {
		out.Binary = &dicom.Binary{Offset: -1, Length: 2, Data: []byte{0, 0}}
		return out, true
	}
	n := max(len(e.Values), 1)
	for range n {
		out.Values = append(out.Values, dummy(e.VR))
	}
	return out, true
}

func (in *instance) items(items []*dicom.Dataset) []*dicom.Dataset {
	if items == nil {
		return nil
	}
	out := make([]*dicom.Dataset, len(items))
	for i, it := range items {
		out[i] = in.dataset(it, false)
	}
	return out
}

// uid returns the replacement of a UID and records it.
func (in *instance) uid(v string) string {
	v = strings.TrimRight(v, "\x00 ")
	if v == "" {
		return ""
	}
	r := in.d.UID(v)
	in.addMapping(Mapping{Kind: KindUID, Original: v, Replacement: r})
	return r
}

// mark adds the attributes that say how the data set was de-identified
// (PS3.15 E.1.1), replacing any it had, and fills in Result.Replaced.
func (in *instance) mark(ds *dicom.Dataset) {
	set := func(t tag.Tag, vr string, values ...string) {
		for i := range ds.Elements {
			if ds.Elements[i].Tag == t {
				ds.Elements[i] = dicom.Element{Tag: t, VR: vr, Values: values}
				return
			}
		}
		ds.Elements = append(ds.Elements, dicom.Element{Tag: t, VR: vr, Values: values})
	}
	set(tag.PatientIdentityRemoved, "CS", "YES")
	methods := []string{"PS3.15 E.3 Basic Application Confidentiality Profile"}
	codes := []*dicom.Dataset{code("113100", "Basic Application Confidentiality Profile")}
	for _, o := range in.d.profile.Options {
		switch o {
		case ModifiedDates:
			methods = append(methods, "Retain Longitudinal Temporal Information Modified Dates Option")
			codes = append(codes, code("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
			set(tag.LongitudinalTemporalInformationModified, "CS", "MODIFIED")
		case CleanDescriptors:
			methods = append(methods, "Clean Descriptors Option")
			codes = append(codes, code("113105", "Clean Descriptors Option"))
		}
	}
	set(tag.DeidentificationMethod, "LO", methods...)
	for i := range ds.Elements {
		if ds.Elements[i].Tag == tag.DeidentificationMethodCodeSequence {
			ds.Elements = append(ds.Elements[:i], ds.Elements[i+1:]...)
			break
		}
	}
	ds.Elements = append(ds.Elements, dicom.Element{Tag: tag.DeidentificationMethodCodeSequence, VR: "SQ", Items: codes})
	in.res.Replaced = dicom.Identity{
		SOPClassUID: ds.First(tag.SOPClassUID), SOPInstanceUID: ds.First(tag.SOPInstanceUID),
		StudyInstanceUID: ds.First(tag.StudyInstanceUID), SeriesInstanceUID: ds.First(tag.SeriesInstanceUID),
	}
}

func code(value, meaning string) *dicom.Dataset {
	return &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.CodeValue, VR: "SH", Values: []string{value}},
		{Tag: tag.CodingSchemeDesignator, VR: "SH", Values: []string{"DCM"}},
		{Tag: tag.CodeMeaning, VR: "LO", Values: []string{meaning}},
	}}
}

// knownVR returns e with the VR of the data dictionary when e came as UN
// (an unknown VR, or implicit VR read without the dictionary) and the
// dictionary gives it a text VR: the profile's action needs its values.
func knownVR(e *dicom.Element) *dicom.Element {
	if e.VR != "UN" || e.Binary == nil || e.Binary.Data == nil {
		return e
	}
	info, ok := tag.Lookup(e.Tag)
	if !ok || len(info.VR) != 2 || binaryVR(info.VR) || info.VR == "SQ" {
		return e
	}
	switch info.VR {
	case "US", "SS", "UL", "SL", "FL", "FD", "AT", "SV", "UV":
		return e
	}
	v := strings.TrimRight(string(e.Binary.Data), " \x00")
	return &dicom.Element{Tag: e.Tag, VR: info.VR, Values: strings.Split(v, `\`)}
}

func binaryVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN":
		return true
	}
	return false
}

func isText(vr string) bool {
	switch vr {
	case "LO", "LT", "SH", "ST", "UT", "UC", "PN", "CS":
		return true
	}
	return false
}

// dummy returns a dummy value valid for vr.
func dummy(vr string) string {
	switch vr {
	case "AE", "CS", "LO", "LT", "SH", "ST", "UT", "UC", "PN":
		return "ANONYMIZED"
	case "AS":
		return "000Y"
	case "DA":
		return "19000101"
	case "DT":
		return "19000101000000"
	case "TM":
		return "000000"
	case "UR":
		return "urn:anonymized"
	case "AT":
		return "00000000"
	}
	return "0" // DS, IS, FL, FD, SL, SS, UL, US, SV, UV
}

// shiftDate moves the date at the start of a DA or DT value by days,
// leaving a time and offset after it as they were. A value that is not
// a date becomes empty rather than pass through.
func shiftDate(v string, days int) string {
	v = strings.TrimSpace(v)
	if len(v) < 8 {
		return ""
	}
	t, err := time.Parse("20060102", v[:8])
	if err != nil {
		// ACR-NEMA dates: YYYY.MM.DD.
		if t, err = time.Parse("2006.01.02", v[:min(len(v), 10)]); err != nil {
			return ""
		}
		return t.AddDate(0, 0, days).Format("20060102")
	}
	return t.AddDate(0, 0, days).Format("20060102") + v[8:]
}

// identifyingWords returns a pattern of the identifying words of ds: the
// words of every text value the profile removes or replaces (names, IDs,
// addresses, institution) and the dates it removes, for Clean to cut out
// of descriptions.
func identifyingWords(ds *dicom.Dataset, p Profile) *regexp.Regexp {
	seen := map[string]bool{}
	var words []string
	for _, e := range ds.Elements {
		if e.Tag.IsPrivate() || !isText(e.VR) && e.VR != "DA" {
			continue
		}
		switch p.action(e.Tag) {
		case Keep, Clean:
			continue
		}
		for _, v := range e.Values {
			for w := range strings.FieldsFuncSeq(v, func(r rune) bool { return r == '^' || r == ' ' || r == ',' || r == '=' }) {
				w = strings.ToUpper(strings.TrimSpace(w))
				if len([]rune(w)) >= 3 && !seen[w] {
					seen[w] = true
					words = append(words, regexp.QuoteMeta(w))
				}
			}
		}
	}
	if len(words) == 0 {
		return nil
	}
	return regexp.MustCompile(`(?i)\b(?:` + strings.Join(words, "|") + `)\b[,;:]?`)
}

// clean removes identifying words from a descriptor (Clean Descriptors
// Option): "CT HEAD DOE^JOHN" becomes "CT HEAD". A description that is
// all identifying words is left empty.
func (in *instance) clean(v string) string {
	if in.scrub == nil {
		return v
	}
	return strings.Join(strings.Fields(in.scrub.ReplaceAllString(v, " ")), " ")
}
