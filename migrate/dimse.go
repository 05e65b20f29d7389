package migrate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
)

// Ways of retrieving from a DIMSE source (--via).
const (
	ViaAuto = ""     // C-GET, or C-MOVE if the source refuses C-GET
	ViaGet  = "get"  // C-GET only
	ViaMove = "move" // C-MOVE only
)

// DIMSESource is a legacy archive reached over DIMSE: Study Root C-FIND
// to discover and list, C-GET or C-MOVE to retrieve. Set its fields,
// then use it; it is safe for concurrent use.
type DIMSESource struct {
	// AETitle is pacsd's: the calling AE title, and the destination of
	// C-MOVEs, which the source must know.
	AETitle string
	// CalledAE and Addr ("host:port") are the source's.
	CalledAE string
	Addr     string
	// Via is ViaAuto, ViaGet or ViaMove.
	Via string
	// MoveAddr is where to listen for the C-STOREs of C-MOVEs
	// (--dimse-addr).
	MoveAddr string
	// AllowCaller decides which calling AE titles may store on the
	// C-MOVE listener; nil allows only CalledAE.
	AllowCaller func(callingAE string, addr net.Addr) bool
	// Fallback receives instances that arrive on the C-MOVE listener for
	// no study in flight (a late sub-operation of a stopped C-MOVE):
	// they are kept all the same.
	Fallback Receiver
	// Backoff is the first wait after the source refused an association
	// as too busy; it doubles with each refusal (default 2 s).
	Backoff time.Duration
	Logger  *slog.Logger

	findMu    sync.Mutex
	findAssoc *dimse.Association // held for discovery's queries

	mu       sync.Mutex
	useMove  bool // the source refused C-GET
	server   *dimse.Server
	listener net.Listener
	serving  chan struct{}
	inflight map[string]Receiver // by SOP Instance UID, during C-MOVEs
}

var _ Source = (*DIMSESource)(nil)

// Kind implements Source.
func (s *DIMSESource) Kind() string { return KindDIMSE }

func (s *DIMSESource) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

var uncompressed = []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}

// maxRefusals bounds how often an association refused as too busy is
// asked for again before the refusal is an error.
const maxRefusals = 8

// dial requests an association, backing off while the source refuses
// it as too busy (too many associations, congestion).
func (s *DIMSESource) dial(ctx context.Context, d *dimse.Dialer) (*dimse.Association, error) {
	d.CallingAE, d.CalledAE, d.Logger = s.AETitle, s.CalledAE, s.log()
	wait := s.Backoff
	if wait <= 0 {
		wait = 2 * time.Second
	}
	for refusals := 0; ; refusals++ {
		a, err := d.Dial(ctx, s.Addr)
		if err == nil || !errors.Is(err, dimse.ErrTransient) || refusals >= maxRefusals {
			return a, err
		}
		pause := wait + rand.N(wait/2+1)
		s.log().Info("source refused an association for now; waiting", "source", s.CalledAE, "wait", pause, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, time.Minute)
	}
}

// FindStudies implements Source, on one association kept for all of
// discovery's queries.
func (s *DIMSESource) FindStudies(ctx context.Context, q Query) (Answer, error) {
	s.findMu.Lock()
	defer s.findMu.Unlock()
	for try := 0; ; try++ {
		if s.findAssoc == nil {
			a, err := s.dial(ctx, &dimse.Dialer{Proposals: []dimse.Proposal{
				{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: uncompressed},
			}})
			if err != nil {
				return Answer{}, err
			}
			s.findAssoc = a
		}
		ans, err := findStudies(ctx, s.findAssoc, q)
		if err == nil {
			return ans, nil
		}
		// An association the source dropped is asked for again once.
		if s.findAssoc.Err() != nil || errors.Is(err, dimse.ErrAborted) {
			s.findAssoc = nil
			if try == 0 && ctx.Err() == nil {
				continue
			}
		}
		return Answer{}, err
	}
}

func findStudies(ctx context.Context, a *dimse.Association, q Query) (Answer, error) {
	ident := studyIdentifier(q)
	var ans Answer
	var final dimse.Status
	for m, err := range a.FindStatus(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident, &final) {
		var se *dimse.StatusError
		switch {
		case errors.As(err, &se):
			// Cancel is how Orthanc ends a capped answer; a failure,
			// how others do, and how some fail on a part of their
			// data, which a narrower query then avoids.
			ans.Capped, ans.Reason = true, strings.TrimSpace(fmt.Sprintf("the answer ended with status 0x%04X %s", uint16(se.Status), se.Comment))
			ans.Failed = !se.Status.IsCancel()
			return ans, nil
		case err != nil:
			return Answer{}, fmt.Errorf("C-FIND: %w", err)
		}
		st := studyOf(m)
		if st.StudyInstanceUID == "" || uid.Valid(st.StudyInstanceUID) != nil {
			continue
		}
		ans.Studies = append(ans.Studies, st)
	}
	if final.IsWarning() {
		ans.Capped, ans.Reason = true, fmt.Sprintf("the answer ended with warning 0x%04X", uint16(final))
	}
	return ans, nil
}

// studyIdentifier builds the STUDY-level identifier of q, asking for the
// attributes a Study row holds. Issuer of Patient ID is not asked for:
// archives that do not index it (Orthanc) read a file of every study to
// answer, which is slow, and fails where a file is lost; the issuer is
// read from the instances as they arrive.
func studyIdentifier(q Query) *dicom.Dataset {
	el := func(t tag.Tag, vr string, v ...string) dicom.Element { return dicom.Element{Tag: t, VR: vr, Values: v} }
	date, tm, name, mod := el(tag.StudyDate, "DA"), el(tag.StudyTime, "TM"), el(tag.PatientName, "PN"), el(tag.ModalitiesInStudy, "CS")
	switch {
	case q.EmptyDate:
		date.Values = []string{`""`}
	case q.DateFrom != "" || q.DateTo != "":
		date.Values = []string{q.dateRange()}
	}
	switch {
	case q.EmptyTime:
		tm.Values = []string{`""`}
	case q.TimeFrom != "":
		tm.Values = []string{q.TimeFrom + "-" + q.TimeTo}
	}
	if q.NameInitial != "" {
		name.Values = []string{q.NameInitial + "*"}
	}
	if q.Modality != "" {
		mod.Values = []string{q.Modality}
	}
	ds := &dicom.Dataset{Elements: []dicom.Element{
		el(tag.QueryRetrieveLevel, "CS", "STUDY"),
		date, tm, el(tag.AccessionNumber, "SH"), mod, name, el(tag.PatientID, "LO"),
		el(tag.PatientBirthDate, "DA"), el(tag.StudyInstanceUID, "UI"), el(tag.NumberOfStudyRelatedInstances, "IS"),
	}}
	for _, k := range q.Keys {
		e := el(k.Tag, k.VR, k.Value)
		if i := slices.IndexFunc(ds.Elements, func(x dicom.Element) bool { return x.Tag == k.Tag }); i >= 0 {
			if len(ds.Elements[i].Values) == 0 {
				ds.Elements[i] = e
			}
			continue
		}
		ds.Elements = append(ds.Elements, e)
	}
	slices.SortFunc(ds.Elements, func(a, b dicom.Element) int { return cmp.Compare(a.Tag, b.Tag) })
	return ds
}

// Instances implements Source: one relational IMAGE-level query, or, for
// a source that answers only hierarchical queries (dcmqrscp), a
// SERIES-level query and an IMAGE-level query per series.
func (s *DIMSESource) Instances(ctx context.Context, study string) ([]InstanceRef, error) {
	a, err := s.dial(ctx, &dimse.Dialer{Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: uncompressed},
	}})
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	defer a.Release(context.WithoutCancel(ctx))
	refs, err := findImages(ctx, a, study, "", true)
	if err == nil && len(refs) > 0 {
		return refs, nil
	}
	if a.Err() != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	if err != nil {
		// An archive that reads the SOP Class UID from its files
		// (Orthanc) fails where a file is lost: the UIDs alone are
		// still worth listing, to retrieve what can be.
		if refs, err2 := findImages(ctx, a, study, "", false); err2 == nil && len(refs) > 0 {
			return refs, nil
		}
	}
	var series []string
	ident := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"SERIES"}},
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}},
		{Tag: tag.SeriesInstanceUID, VR: "UI"},
	}}
	var final dimse.Status
	for m, err := range a.FindStatus(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident, &final) {
		if err != nil {
			return nil, fmt.Errorf("list series: C-FIND: %w", err)
		}
		if u := m.First(tag.SeriesInstanceUID); u != "" {
			series = append(series, u)
		}
	}
	if final.IsWarning() {
		return nil, fmt.Errorf("list series: the answer ended with warning 0x%04X", uint16(final))
	}
	refs = nil
	for _, se := range series {
		r, err := findImages(ctx, a, study, se, true)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r...)
	}
	return refs, nil
}

// findImages lists the instances of a study, or of one series of it,
// with their SOP classes if classes is set.
func findImages(ctx context.Context, a *dimse.Association, study, series string, classes bool) ([]InstanceRef, error) {
	ident := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"IMAGE"}},
		{Tag: tag.SOPInstanceUID, VR: "UI"},
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}},
		{Tag: tag.SeriesInstanceUID, VR: "UI"},
	}}
	if series != "" {
		ident.Elements[3].Values = []string{series}
	}
	if classes {
		ident.Elements = slices.Insert(ident.Elements, 1, dicom.Element{Tag: tag.SOPClassUID, VR: "UI"})
	}
	var refs []InstanceRef
	var final dimse.Status
	for m, err := range a.FindStatus(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident, &final) {
		if err != nil {
			return nil, fmt.Errorf("list instances: C-FIND: %w", err)
		}
		r := InstanceRef{SOPInstanceUID: m.First(tag.SOPInstanceUID), SOPClassUID: m.First(tag.SOPClassUID), SeriesInstanceUID: m.First(tag.SeriesInstanceUID)}
		if r.SOPInstanceUID != "" {
			refs = append(refs, r)
		}
	}
	if final.IsWarning() {
		return nil, fmt.Errorf("list instances: the answer ended with warning 0x%04X", uint16(final))
	}
	return refs, nil
}

// storageSyntaxes are the transfer syntaxes a retrieval proposes for
// each storage SOP class, each in a presentation context of its own so
// that the source can send every instance as it holds it; the most
// common first, since at most 128 contexts fit.
var storageSyntaxes = []string{
	uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.JPEGLosslessSV1, uid.JPEGBaseline8Bit,
	uid.JPEG2000Lossless, uid.JPEG2000, uid.JPEGLSLossless, uid.RLELossless, uid.JPEGExtended12Bit,
	uid.JPEGLSNearLossless, uid.DeflatedExplicitVRLittleEndian, uid.ExplicitVRBigEndian, uid.JPEGLossless,
	uid.HTJ2KLossless, uid.HTJ2K, uid.MPEG4HP41, uid.MPEG2MPML, uid.HEVCMP51,
}

// StorageProposals returns the presentation contexts to receive
// instances of classes in, after the contexts already given: one per
// class and transfer syntax, every class in the first syntax before any
// in the second, as far as 128 contexts go.
func StorageProposals(classes []string, already ...dimse.Proposal) []dimse.Proposal {
	props := slices.Clone(already)
	for _, ts := range storageSyntaxes {
		for _, c := range classes {
			if len(props) < 128 {
				props = append(props, dimse.Proposal{AbstractSyntax: c, TransferSyntaxes: []string{ts}})
			}
		}
	}
	return props
}

// Retrieve implements Source.
func (s *DIMSESource) Retrieve(ctx context.Context, study string, refs, only []InstanceRef, dst Receiver) error {
	s.mu.Lock()
	move := s.Via == ViaMove || s.useMove
	s.mu.Unlock()
	if !move {
		err := s.get(ctx, study, refs, only, dst)
		if !errors.Is(err, errRefused) || s.Via == ViaGet {
			return err
		}
		s.log().Warn("the source refuses C-GET; retrieving by C-MOVE to this AE from now on", "source", s.CalledAE, "ae_title", s.AETitle, "err", err)
		s.mu.Lock()
		s.useMove = true
		s.mu.Unlock()
	}
	return s.move(ctx, study, refs, only, dst)
}

// classes returns the SOP classes of refs, in order of first use, or
// the common ones when refs do not say.
func classes(refs []InstanceRef) []string {
	var out []string
	for _, r := range refs {
		if r.SOPClassUID == "" {
			return commonClasses
		}
		if !slices.Contains(out, r.SOPClassUID) {
			out = append(out, r.SOPClassUID)
		}
	}
	return out
}

// CommonClasses returns the storage SOP classes proposed for instances
// whose classes a source does not say.
func CommonClasses() []string { return slices.Clone(commonClasses) }

// commonClasses are the storage SOP classes proposed for a study whose
// instances' classes are not known.
var commonClasses = []string{
	uid.CTImageStorage, uid.MRImageStorage, uid.ComputedRadiographyImageStorage, uid.DigitalXRayImageStorageForPresentation,
	uid.DigitalMammographyXRayImageStorageForPresentation, uid.UltrasoundImageStorage, uid.UltrasoundMultiFrameImageStorage,
	uid.SecondaryCaptureImageStorage, uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
	uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage, uid.MultiFrameTrueColorSecondaryCaptureImageStorage,
	uid.NuclearMedicineImageStorage, uid.PositronEmissionTomographyImageStorage, uid.XRayAngiographicImageStorage,
	uid.XRayRadiofluoroscopicImageStorage, uid.EnhancedCTImageStorage, uid.EnhancedMRImageStorage, uid.RTImageStorage,
	uid.RTDoseStorage, uid.RTStructureSetStorage, uid.RTPlanStorage, uid.BasicTextSRStorage, uid.EnhancedSRStorage,
	uid.ComprehensiveSRStorage, uid.KeyObjectSelectionDocumentStorage, uid.GrayscaleSoftcopyPresentationStateStorage,
	uid.EncapsulatedPDFStorage, uid.SegmentationStorage, uid.XRayRadiationDoseSRStorage, uid.DigitalXRayImageStorageForProcessing,
}

func (s *DIMSESource) get(ctx context.Context, study string, refs, only []InstanceRef, dst Receiver) error {
	model := uid.StudyRootQueryRetrieveInformationModelGet
	props := StorageProposals(classes(refs), dimse.Proposal{AbstractSyntax: model, TransferSyntaxes: uncompressed})
	a, err := s.dial(ctx, &dimse.Dialer{Proposals: props, Store: storeHandler{dst}})
	if err != nil {
		return fmt.Errorf("C-GET: %w", err)
	}
	defer a.Release(context.WithoutCancel(ctx))
	if _, ok := a.Context(model, ""); !ok {
		return fmt.Errorf("%w: C-GET: no presentation context accepted for %s", errRefused, uid.Name(model))
	}
	return eachRetrieval(study, only, func(ident *dicom.Dataset) error {
		subs, err := a.Get(ctx, model, ident, nil)
		return subOperationsError("C-GET", subs, err)
	})
}

// eachRetrieval calls retrieve with the identifier of the whole study, or
// of each instance of only, and joins what failed.
func eachRetrieval(study string, only []InstanceRef, retrieve func(*dicom.Dataset) error) error {
	if only == nil {
		return retrieve(retrieveIdentifier(study))
	}
	var errs []error
	for _, r := range only {
		if err := retrieve(&dicom.Dataset{Elements: []dicom.Element{
			{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"IMAGE"}},
			{Tag: tag.SOPInstanceUID, VR: "UI", Values: []string{r.SOPInstanceUID}},
			{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}},
			{Tag: tag.SeriesInstanceUID, VR: "UI", Values: []string{r.SeriesInstanceUID}},
		}}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.SOPInstanceUID, err))
		}
	}
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	return errors.Join(errs...)
}

func (s *DIMSESource) move(ctx context.Context, study string, refs, only []InstanceRef, dst Receiver) error {
	if err := s.listen(); err != nil {
		return err
	}
	s.mu.Lock()
	for _, r := range refs {
		s.inflight[r.SOPInstanceUID] = dst
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for _, r := range refs {
			if s.inflight[r.SOPInstanceUID] == dst {
				delete(s.inflight, r.SOPInstanceUID)
			}
		}
		s.mu.Unlock()
	}()
	model := uid.StudyRootQueryRetrieveInformationModelMove
	// Some sources (dcmqrscp) expect a C-FIND context beside C-MOVE's.
	a, err := s.dial(ctx, &dimse.Dialer{Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: uncompressed},
		{AbstractSyntax: model, TransferSyntaxes: uncompressed},
	}})
	if err != nil {
		return fmt.Errorf("C-MOVE: %w", err)
	}
	defer a.Release(context.WithoutCancel(ctx))
	if _, ok := a.Context(model, ""); !ok {
		return fmt.Errorf("%w: C-MOVE: no presentation context accepted for %s", errRefused, uid.Name(model))
	}
	return eachRetrieval(study, only, func(ident *dicom.Dataset) error {
		subs, err := a.Move(ctx, model, s.AETitle, ident, nil)
		return subOperationsError("C-MOVE", subs, err)
	})
}

func retrieveIdentifier(study string) *dicom.Dataset {
	return &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"STUDY"}},
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}},
	}}
}

// subOperationsError describes a retrieval that did not complete.
func subOperationsError(op string, subs dimse.SubOperations, err error) error {
	if err == nil && subs.Failed == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s: %d completed, %d failed, %d with warnings", op, subs.Completed, subs.Failed, subs.Warning)
	if n := len(subs.FailedInstances); n > 0 {
		msg += fmt.Sprintf(" (failed: %s)", listUIDs(subs.FailedInstances, 5))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", msg, err)
	}
	return errors.New(msg)
}

// listUIDs joins at most n UIDs, saying how many more there are.
func listUIDs(uids []string, n int) string {
	if len(uids) <= n {
		return fmt.Sprint(uids)
	}
	return fmt.Sprintf("%v and %d more", uids[:n], len(uids)-n)
}

// listen starts the C-MOVE listener, once.
func (s *DIMSESource) listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server != nil {
		return nil
	}
	if s.MoveAddr == "" {
		return errors.New("migrate: C-MOVE needs an address to listen on for the instances (--dimse-addr)")
	}
	l, err := net.Listen("tcp", s.MoveAddr)
	if err != nil {
		return fmt.Errorf("migrate: C-MOVE listener: %w", err)
	}
	allow := s.AllowCaller
	if allow == nil {
		allow = func(ae string, _ net.Addr) bool { return ae == s.CalledAE }
	}
	s.inflight = map[string]Receiver{}
	s.server = &dimse.Server{AETitle: s.AETitle, AllowCaller: allow, Echo: echo{}, Store: moveHandler{s}, Logger: s.log()}
	s.listener = l
	s.serving = make(chan struct{})
	go func() {
		defer close(s.serving)
		s.server.Serve(l)
	}()
	s.log().Info("listening for the instances of C-MOVEs", "addr", l.Addr().String(), "ae_title", s.AETitle)
	return nil
}

// MoveListenerAddr returns the address of the C-MOVE listener, or nil
// before the first C-MOVE.
func (s *DIMSESource) MoveListenerAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener == nil {
		return nil
	}
	return s.listener.Addr()
}

// Close implements Source: it releases discovery's association and stops
// the C-MOVE listener.
func (s *DIMSESource) Close() error {
	s.findMu.Lock()
	if s.findAssoc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s.findAssoc.Release(ctx)
		cancel()
		s.findAssoc = nil
	}
	s.findMu.Unlock()
	s.mu.Lock()
	srv, serving := s.server, s.serving
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	<-serving
	return err
}

// storeHandler hands the C-STOREs of a C-GET to a Receiver.
type storeHandler struct{ dst Receiver }

func (h storeHandler) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	return h.dst.Receive(ctx, &Incoming{
		SOPClassUID: req.SOPClassUID, SOPInstanceUID: req.SOPInstanceUID, TransferSyntaxUID: req.TransferSyntaxUID,
		CallingAE: a.CalledAE(), Dataset: req.Dataset,
	})
}

// moveHandler hands the C-STOREs that arrive on the C-MOVE listener to
// the Receiver of the study they belong to.
type moveHandler struct{ s *DIMSESource }

func (h moveHandler) Store(ctx context.Context, a *dimse.Association, req *dimse.StoreRequest) error {
	h.s.mu.Lock()
	dst, ok := h.s.inflight[req.SOPInstanceUID]
	h.s.mu.Unlock()
	if !ok {
		dst = h.s.Fallback
		if dst == nil {
			return &dimse.StatusError{Status: dimse.StatusOutOfResources, Comment: "no migration expects this instance"}
		}
		h.s.log().Warn("instance arrived for no study in flight; kept all the same", "sop_instance_uid", req.SOPInstanceUID, "calling_ae", a.CallingAE())
	}
	return dst.Receive(ctx, &Incoming{
		SOPClassUID: req.SOPClassUID, SOPInstanceUID: req.SOPInstanceUID, TransferSyntaxUID: req.TransferSyntaxUID,
		CallingAE: a.CallingAE(), Dataset: req.Dataset,
	})
}

type echo struct{}

func (echo) Echo(context.Context, *dimse.Association) error { return nil }
