package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
)

// Source is an archive to migrate from: dimse.go and web.go hold the
// two kinds.
type Source interface {
	// FindStudies runs one STUDY-level query and returns the studies it
	// matched, and whether the answer is capped: the source stopped
	// before the last match.
	FindStudies(ctx context.Context, q Query) (Answer, error)
	// Instances lists the instances the source holds of a study (an
	// IMAGE-level query).
	Instances(ctx context.Context, study string) ([]InstanceRef, error)
	// Retrieve asks the source for the instances of a study, which it
	// hands to dst as they arrive: the whole study when only is nil,
	// else only those instances, one by one, so that one the source
	// cannot send does not stop the others. refs are the study's
	// instances as Instances listed them. Retrieve returns once the
	// source says it is done; its error says what did not arrive.
	Retrieve(ctx context.Context, study string, refs, only []InstanceRef, dst Receiver) error
	// Kind is KindDIMSE or KindDICOMweb.
	Kind() string
	// Close releases what the source holds (a C-MOVE listener).
	Close() error
}

// Query is one STUDY-level query of discovery: a part of the Study Date
// range, narrowed further where that part alone is capped.
type Query struct {
	// DateFrom and DateTo bound the Study Date (YYYYMMDD, inclusive).
	// Both empty match any date.
	DateFrom, DateTo string
	// EmptyDate matches only the studies without a Study Date (Empty
	// Value Matching, PS3.4 C.2.2.2.1); the date bounds are then unused.
	EmptyDate bool
	// TimeFrom and TimeTo bound the Study Time (HHMMSS, inclusive);
	// empty for any time.
	TimeFrom, TimeTo string
	// EmptyTime matches only the studies without a Study Time.
	EmptyTime bool
	// Modality, when set, is the Modalities in Study to match.
	Modality string
	// NameInitial, when set, matches patient names that begin with it.
	NameInitial string
	// Keys are the --filter keys, matched as given.
	Keys []Key
}

// String describes the query for logs and reports.
func (q Query) String() string {
	var parts []string
	switch {
	case q.EmptyDate:
		parts = append(parts, `StudyDate=""`)
	case q.DateFrom != "" || q.DateTo != "":
		parts = append(parts, "StudyDate="+q.dateRange())
	}
	switch {
	case q.EmptyTime:
		parts = append(parts, `StudyTime=""`)
	case q.TimeFrom != "" || q.TimeTo != "":
		parts = append(parts, "StudyTime="+q.TimeFrom+"-"+q.TimeTo)
	}
	if q.Modality != "" {
		parts = append(parts, "ModalitiesInStudy="+q.Modality)
	}
	if q.NameInitial != "" {
		parts = append(parts, "PatientName="+q.NameInitial+"*")
	}
	for _, k := range q.Keys {
		parts = append(parts, k.String())
	}
	if len(parts) == 0 {
		return "all studies"
	}
	return strings.Join(parts, " ")
}

// hasKey reports whether a --filter key matches on t.
func (q Query) hasKey(t tag.Tag) bool {
	for _, k := range q.Keys {
		if k.Tag == t {
			return true
		}
	}
	return false
}

func (q Query) dateRange() string {
	if q.DateFrom == q.DateTo {
		return q.DateFrom
	}
	return q.DateFrom + "-" + q.DateTo
}

// Key is an attribute to match in every STUDY-level query: --filter
// KEY=VALUE.
type Key struct {
	Tag   tag.Tag
	VR    string
	Value string
}

func (k Key) String() string {
	name := k.Tag.String()
	// A tag of a repeating group (50xx,0010) shares its keyword with
	// the group's first, so the keyword names it only when it reads back.
	if info, ok := tag.Lookup(k.Tag); ok {
		if t, err := tag.Parse(info.Keyword); err == nil && t == k.Tag {
			name = info.Keyword
		}
	}
	return name + "=" + k.Value
}

// ParseKey reads KEYWORD=VALUE (or GGGGEEEE=VALUE), as --filter takes it.
func ParseKey(s string) (Key, error) {
	name, v, ok := strings.Cut(s, "=")
	if !ok {
		return Key{}, fmt.Errorf("migrate: filter %q is not KEYWORD=VALUE", s)
	}
	t, err := tag.Parse(strings.TrimSpace(name))
	if err != nil {
		return Key{}, fmt.Errorf("migrate: filter %q: %w", s, err)
	}
	info, ok := tag.Lookup(t)
	if !ok {
		return Key{}, fmt.Errorf("migrate: filter %q: unknown attribute", s)
	}
	switch {
	case t.Element() == 0 || t.Group() < 0x0008 || t.Group() == 0xFFFE || info.VR == "SQ" || t == tag.PixelData:
		// Group lengths, the command and File Meta Information groups,
		// items and sequences are no keys to match on.
		return Key{}, fmt.Errorf("migrate: filter %q: %s is not an attribute to match on", s, info.Keyword)
	}
	switch t {
	case tag.StudyDate, tag.QueryRetrieveLevel, tag.StudyInstanceUID:
		return Key{}, fmt.Errorf("migrate: filter %q: give the date with --since and --until; the level and UID are the migration's", s)
	}
	return Key{Tag: t, VR: info.VR, Value: v}, nil
}

// Answer is what a STUDY-level query found.
type Answer struct {
	Studies []*Study
	// Capped is set when the source did not give every match; Reason
	// says how that showed.
	Capped bool
	Reason string
	// Failed is set when the answer ended with a failure status, which
	// Capped then also is.
	Failed bool
}

// InstanceRef names one instance of a study at the source.
type InstanceRef struct {
	SOPInstanceUID    string
	SOPClassUID       string
	SeriesInstanceUID string
}

// Receiver takes the instances a retrieval brings.
type Receiver interface {
	// Receive keeps one instance, reading its data set from in.Dataset,
	// and returns nil once it is durably kept. Its error is what the
	// source is told (a C-STORE failure status).
	Receive(ctx context.Context, in *Incoming) error
}

// Incoming is an instance arriving from a source.
type Incoming struct {
	// SOPClassUID and SOPInstanceUID are what the source declared.
	SOPClassUID    string
	SOPInstanceUID string
	// TransferSyntaxUID is the encoding of Dataset.
	TransferSyntaxUID string
	// CallingAE is the AE that sent it, empty over DICOMweb.
	CallingAE string
	// Dataset is the data set, without File Meta Information.
	Dataset io.Reader
	// Exact is set when Dataset holds the bytes of the source's own
	// file (WADO-RS with transfer-syntax=*, a file on disk), which
	// verification then compares with what pacsd keeps.
	Exact bool
}

// study reads the Study of a STUDY-level match.
func studyOf(ds *dicom.Dataset) *Study {
	n := 0
	fmt.Sscan(ds.First(tag.NumberOfStudyRelatedInstances), &n)
	return &Study{
		StudyInstanceUID:  ds.First(tag.StudyInstanceUID),
		PatientID:         ds.First(tag.PatientID),
		IssuerOfPatientID: ds.First(tag.IssuerOfPatientID),
		PatientName:       ds.String(tag.PatientName),
		PatientBirthDate:  ds.First(tag.PatientBirthDate),
		StudyDate:         ds.First(tag.StudyDate),
		StudyTime:         ds.First(tag.StudyTime),
		AccessionNumber:   ds.First(tag.AccessionNumber),
		Modalities:        ds.String(tag.ModalitiesInStudy),
		InstancesAtSource: n,
	}
}

// errRefused marks a source that refuses the retrieval service asked
// for: no presentation context for C-GET, for instance.
var errRefused = errors.New("migrate: the source refuses this service")
