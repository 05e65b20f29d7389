package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/archive"
	auditlog "github.com/pacsd/pacsd/audit"
	"github.com/pacsd/pacsd/auth"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/route"
	"github.com/pacsd/pacsd/storage"
)

// The front doors know nothing of principals or the audit trail: serve
// hands them an index and an archive that apply the caller's principal
// (which the authentication put in the request's or association's
// context) and note what each request or operation reads and stores.
// When the request or operation ends, what was noted becomes audit
// messages, one per study rather than one per instance.

// guardedIndex is the index as the front doors see it: every query and
// retrieve is kept to the patients of the caller's issuers (per-trust
// access), and noted for the audit trail. Calls without a principal,
// which come from pacsd itself, are not restricted. It has only the
// methods the front doors use, so that a new one cannot pass the guard
// unnoticed.
type guardedIndex struct {
	db *sqlindex.DB
	// failed, if set, counts a query or count that failed, other than
	// by its caller going away, in the metrics.
	failed func(operation string)
}

// restrict returns q kept to the issuers of ctx's principal.
func restrict(ctx context.Context, q *index.Query) *index.Query {
	p, ok := auth.FromContext(ctx)
	if !ok || p.AllIssuers() {
		return q
	}
	r := *q
	r.Issuers = p.Issuers
	return &r
}

func (g guardedIndex) Find(ctx context.Context, q *index.Query) iter.Seq2[*dicom.Dataset, error] {
	return noteQuery(ctx, countFailure(ctx, g.db.Find(ctx, restrict(ctx, q)), g.failed))
}

func (g guardedIndex) FindInstances(ctx context.Context, q *index.Query) iter.Seq2[*index.Instance, error] {
	return noteQuery(ctx, countFailure(ctx, g.db.FindInstances(ctx, restrict(ctx, q)), g.failed))
}

// countFailure tells failed of a query whose matches end in an error
// that is not ctx's own end.
func countFailure[T any](ctx context.Context, seq iter.Seq2[T, error], failed func(string)) iter.Seq2[T, error] {
	if failed == nil {
		return seq
	}
	return func(yield func(T, error) bool) {
		for v, err := range seq {
			if err != nil && ctx.Err() == nil {
				failed("query")
			}
			if !yield(v, err) {
				return
			}
		}
	}
}

func (g guardedIndex) UnsupportedKeys(q *index.Query) ([]tag.Tag, error) {
	return g.db.UnsupportedKeys(q)
}

func (g guardedIndex) CountInstances(ctx context.Context, q *index.Query) (int, error) {
	n, err := g.db.CountInstances(ctx, restrict(ctx, q))
	if err != nil && ctx.Err() == nil && g.failed != nil {
		g.failed("count")
	}
	return n, err
}

// StudyPatient answers index.ErrNotFound for a study of a patient beyond
// the caller's issuers, as if it were not there.
func (g guardedIndex) StudyPatient(ctx context.Context, study string) (*index.Patient, error) {
	pat, err := g.db.StudyPatient(ctx, study)
	if err != nil {
		return nil, err
	}
	if p, ok := auth.FromContext(ctx); ok && !p.AllowsIssuer(pat.IssuerOfPatientID) {
		return nil, fmt.Errorf("study %s: %w", study, index.ErrNotFound)
	}
	return pat, nil
}

// noteQuery notes a query in ctx's access once its matches have been
// read, with the error that ended them, if any.
func noteQuery[T any](ctx context.Context, seq iter.Seq2[T, error]) iter.Seq2[T, error] {
	acc := accessFrom(ctx)
	if acc == nil {
		return seq
	}
	return func(yield func(T, error) bool) {
		var failed error
		defer func() { acc.query(failed) }()
		for v, err := range seq {
			if err != nil {
				failed = err
			}
			if !yield(v, err) {
				return
			}
		}
	}
}

// guardedArchive is the archive as the front doors see it: stores are
// refused for patients beyond the caller's issuers, and stores and reads
// are noted for the audit trail. Like guardedIndex, it has only the
// methods the front doors use.
type guardedArchive struct {
	arch *archive.Service
	// patients finds the patient of an instance the archive kept.
	patients interface {
		StudyPatient(ctx context.Context, study string) (*index.Patient, error)
	}
}

func (g guardedArchive) Store(ctx context.Context, req *archive.StoreRequest) (*archive.Result, error) {
	if p, ok := auth.FromContext(ctx); ok {
		if !p.AllIssuers() {
			r := *req
			r.Issuers = p.Issuers
			req = &r
		}
		if req.Principal == "" && (p.Kind == auth.KindOIDC || p.Kind == auth.KindToken) {
			r := *req
			r.Principal = p.Name
			req = &r
		}
	}
	res, err := g.arch.Store(ctx, req)
	if err == nil && res.Kept && req.Issuers != nil {
		// The archive kept the copy it holds without reading the new
		// one to its end, where it checks the issuer: the sender must
		// not learn of another trust's instance by resending it.
		err = g.checkKept(ctx, req.Issuers, res.Instance)
		if err != nil {
			res = nil
		}
	}
	if acc := accessFrom(ctx); acc != nil {
		acc.stored(req, res, err)
	}
	return res, err
}

// checkKept refuses an instance the archive already held, and kept, if
// its patient is not of issuers.
func (g guardedArchive) checkKept(ctx context.Context, issuers []string, in *index.Instance) error {
	p, err := g.patients.StudyPatient(ctx, in.StudyInstanceUID)
	if err != nil {
		return fmt.Errorf("%w: patient of study %s: %v", archive.ErrUnavailable, in.StudyInstanceUID, err)
	}
	if issuer := strings.TrimSpace(p.IssuerOfPatientID); issuer != "" && slices.Contains(issuers, issuer) {
		return nil
	}
	return &archive.IssuerError{PatientID: p.PatientID, IssuerOfPatientID: p.IssuerOfPatientID, StudyInstanceUID: in.StudyInstanceUID, Allowed: issuers}
}

func (g guardedArchive) Open(ctx context.Context, in *index.Instance) (storage.Object, error) {
	obj, err := g.arch.Open(ctx, in)
	noteRead(ctx, in, err)
	return obj, err
}

// OpenOriginal opens the object in was received as (see
// archive.Service.OpenOriginal).
func (g guardedArchive) OpenOriginal(ctx context.Context, in *index.Instance) (storage.Object, error) {
	obj, err := g.arch.OpenOriginal(ctx, in)
	noteRead(ctx, in, err)
	return obj, err
}

func (g guardedArchive) OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error) {
	fm, rc, err := g.arch.OpenDataset(ctx, in, ts)
	noteRead(ctx, in, err)
	return fm, rc, err
}

func (g guardedArchive) Metadata(ctx context.Context, in *index.Instance) (*archive.Metadata, error) {
	md, err := g.arch.Metadata(ctx, in)
	if !errors.Is(err, archive.ErrNoMetadata) {
		// The study is read; its instances are counted as their
		// objects are opened, which frames and renderings also do.
		noteRead(ctx, &index.Instance{StudyInstanceUID: in.StudyInstanceUID}, err)
	}
	return md, err
}

func noteRead(ctx context.Context, in *index.Instance, err error) {
	if acc := accessFrom(ctx); acc != nil {
		acc.read(in, err)
	}
}

// access gathers what one HTTP request or DIMSE operation did with
// patient data.
type access struct {
	// beginRead, if set, is called as the first instance of each study
	// is read: a C-MOVE or C-GET begins transferring it.
	beginRead func(study string)

	mu       sync.Mutex
	queried  bool
	queryErr error
	reads    studies
	stores   studies
	replaced bool
}

// studies are the studies of an access, in the order met.
type studies struct {
	order []string
	by    map[string]*studyAccess
}

type studyAccess struct {
	patient auditlog.Patient // known for stores, looked up for reads
	study   auditlog.Study
	err     error
}

// add counts an instance of class in study and returns the study's
// access, and whether it is the first of the study.
func (s *studies) add(study, class string, err error) (*studyAccess, bool) {
	sa, ok := s.by[study]
	if !ok {
		if s.by == nil {
			s.by = map[string]*studyAccess{}
		}
		sa = &studyAccess{study: auditlog.Study{UID: study, SOPClasses: map[string]int{}}}
		s.by[study] = sa
		s.order = append(s.order, study)
	}
	if class != "" {
		sa.study.SOPClasses[class]++
	}
	if err != nil && sa.err == nil {
		sa.err = err
	}
	return sa, !ok
}

func (a *access) query(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.queried = true
	if err != nil && a.queryErr == nil {
		a.queryErr = err
	}
}

func (a *access) read(in *index.Instance, err error) {
	a.mu.Lock()
	_, first := a.reads.add(in.StudyInstanceUID, in.SOPClassUID, err)
	begin := a.beginRead
	a.mu.Unlock()
	if first && begin != nil {
		begin(in.StudyInstanceUID)
	}
}

func (a *access) stored(req *archive.StoreRequest, res *archive.Result, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if res == nil || res.Instance == nil {
		study := req.StudyInstanceUID
		var refused *archive.IssuerError
		if errors.As(err, &refused) {
			study = refused.StudyInstanceUID
		}
		sa, _ := a.stores.add(study, req.SOPClassUID, err)
		if refused != nil && sa.patient.ID == "" {
			sa.patient = auditlog.Patient{ID: refused.PatientID, Issuer: refused.IssuerOfPatientID, Name: refused.PatientName}
		}
		return
	}
	in := res.Instance
	sa, _ := a.stores.add(in.StudyInstanceUID, in.SOPClassUID, err)
	if h := in.Header; h != nil && sa.patient.ID == "" {
		sa.patient = auditlog.Patient{ID: h.String(tag.PatientID), Issuer: h.String(tag.IssuerOfPatientID), Name: h.String(tag.PatientName)}
		sa.study.Accession = h.String(tag.AccessionNumber)
	}
	if res.Replaced != nil {
		a.replaced = true
	}
}

type accessKey struct{}

func withAccess(ctx context.Context, a *access) context.Context {
	return context.WithValue(ctx, accessKey{}, a)
}

func accessFrom(ctx context.Context) *access {
	a, _ := ctx.Value(accessKey{}).(*access)
	return a
}

// auditor turns accesses into audit messages.
type auditor struct {
	trail *auditlog.Trail
	// patients looks up the patient of a study read.
	patients interface {
		StudyPatient(ctx context.Context, study string) (*index.Patient, error)
	}
	log *slog.Logger
}

// lookupTimeout bounds the lookup of a study's patient for its audit
// message.
const lookupTimeout = 5 * time.Second

// patient returns the patient of study, for an audit message; only its
// UID is known when the lookup fails.
func (au *auditor) patient(ctx context.Context, study string) auditlog.Patient {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
	defer cancel()
	p, err := au.patients.StudyPatient(ctx, study)
	if err != nil {
		au.log.Warn("audit: patient of a study not found", "study", study, "err", err)
		return auditlog.Patient{}
	}
	ap := auditlog.Patient{ID: p.PatientID, Issuer: p.IssuerOfPatientID}
	if p.Attributes != nil {
		ap.Name = p.Attributes.String(tag.PatientName)
	}
	return ap
}

// recordStores records each study of a's stores from who.
func (au *auditor) recordStores(a *access, who auditlog.Actor) {
	for _, uid := range a.stores.order {
		sa := a.stores.by[uid]
		au.trail.Stored(who, a.replaced, sa.err, sa.patient, sa.study)
	}
}

// recordReads records each study of a's reads as sent to dest at
// requestor's request.
func (au *auditor) recordReads(ctx context.Context, a *access, requestor, dest auditlog.Actor, failed error) {
	for _, uid := range a.reads.order {
		sa := a.reads.by[uid]
		err := sa.err
		if err == nil {
			err = failed
		}
		au.trail.Sent(requestor, dest, err, au.patient(ctx, uid), sa.study)
	}
}

// auditRequests records what each HTTP request did with patient data:
// the instances it stored (STOW-RS), read (WADO-RS, /api), or, when it
// did neither, the query it ran (QIDO-RS, /api), under the request's
// principal.
func (au *auditor) auditRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := &access{}
		next.ServeHTTP(w, r.WithContext(withAccess(r.Context(), a)))
		who := auditlog.Actor{Addr: r.RemoteAddr}
		if p, ok := auth.FromContext(r.Context()); ok {
			who.User = p.Name
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		au.recordStores(a, who)
		au.recordReads(r.Context(), a, who, who, nil)
		if a.queried && len(a.reads.order) == 0 && len(a.stores.order) == 0 {
			au.trail.Queried(who, a.queryErr, "", []byte(r.URL.RequestURI()), "")
		}
	})
}

// auditedDIMSE records what each DIMSE operation does with patient data.
type auditedDIMSE struct {
	*auditor
	store dimse.StoreHandler
	find  dimse.FindHandler
	move  dimse.MoveHandler
	get   dimse.GetHandler
	// remotes give the address of C-MOVE destinations.
	remotes map[string]string
}

var (
	_ dimse.StoreHandler = (*auditedDIMSE)(nil)
	_ dimse.FindHandler  = (*auditedDIMSE)(nil)
	_ dimse.MoveHandler  = (*auditedDIMSE)(nil)
	_ dimse.GetHandler   = (*auditedDIMSE)(nil)
)

// caller is the association's calling AE as an audit actor.
func caller(a *dimse.Association) auditlog.Actor {
	who := auditlog.Actor{User: a.CallingAE(), AETitle: a.CallingAE()}
	if addr := a.RemoteAddr(); addr != nil {
		who.Addr = addr.String()
	}
	return who
}

func (d *auditedDIMSE) Store(ctx context.Context, as *dimse.Association, req *dimse.StoreRequest) error {
	acc := &access{}
	err := d.store.Store(withAccess(ctx, acc), as, req)
	acc.mu.Lock()
	defer acc.mu.Unlock()
	d.recordStores(acc, caller(as))
	return err
}

func (d *auditedDIMSE) Find(ctx context.Context, as *dimse.Association, req *dimse.FindRequest) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		acc := &access{}
		var failed error
		defer func() {
			if failed == nil {
				failed = acc.queryErr
			}
			query, ts := encodeIdentifier(req.Identifier)
			d.trail.Queried(caller(as), failed, req.SOPClassUID, query, ts)
		}()
		for ds, err := range d.find.Find(withAccess(ctx, acc), as, req) {
			if err != nil {
				failed = err
			}
			if !yield(ds, err) {
				return
			}
		}
	}
}

// encodeIdentifier returns a C-FIND identifier's bytes for the audit
// message, in Explicit VR Little Endian and UTF-8 (as it was decoded).
func encodeIdentifier(ds *dicom.Dataset) ([]byte, string) {
	ts, _ := uid.LookupTransferSyntax(uid.ExplicitVRLittleEndian)
	var b bytes.Buffer
	if ds == nil || ds.Encode(&b, ts, dicom.EncodeOptions{CharacterSet: dicom.CharsetUTF8}) != nil {
		return nil, ""
	}
	return b.Bytes(), ts.UID
}

func (d *auditedDIMSE) Move(ctx context.Context, as *dimse.Association, req *dimse.MoveRequest, progress func(dimse.SubOperations)) (dimse.SubOperations, error) {
	dest := auditlog.Actor{User: req.Destination, AETitle: req.Destination, Addr: d.remotes[req.Destination]}
	return d.transfer(ctx, as, dest, func(ctx context.Context) (dimse.SubOperations, error) {
		return d.move.Move(ctx, as, req, progress)
	})
}

func (d *auditedDIMSE) Get(ctx context.Context, as *dimse.Association, req *dimse.GetRequest, progress func(dimse.SubOperations)) (dimse.SubOperations, error) {
	return d.transfer(ctx, as, caller(as), func(ctx context.Context) (dimse.SubOperations, error) {
		return d.get.Get(ctx, as, req, progress)
	})
}

// transfer records a C-MOVE or C-GET: Begin Transferring as each study's
// first instance is read, and the instances sent once it ends, failed if
// any sub-operation failed.
func (d *auditedDIMSE) transfer(ctx context.Context, as *dimse.Association, dest auditlog.Actor, run func(context.Context) (dimse.SubOperations, error)) (dimse.SubOperations, error) {
	requestor := caller(as)
	acc := &access{beginRead: func(study string) {
		d.trail.Sending(requestor, dest, d.patient(ctx, study), auditlog.Study{UID: study})
	}}
	ops, err := run(withAccess(ctx, acc))
	failed := err
	if failed == nil && ops.Failed > 0 {
		failed = fmt.Errorf("%d of %d sub-operations failed", ops.Failed, ops.Completed+ops.Failed+ops.Warning)
	}
	acc.mu.Lock()
	defer acc.mu.Unlock()
	d.recordReads(ctx, acc, requestor, dest, failed)
	return ops, err
}

// auditedSender records what a forwarding destination is sent: one
// Begin Transferring and one Instances Transferred per study sent.
type auditedSender struct {
	route.Sender
	*auditor
	dest auditlog.Actor
}

func (s auditedSender) Send(ctx context.Context, sh *route.Shipment) error {
	patient := s.patient(ctx, sh.Study)
	study := auditlog.Study{UID: sh.Study, SOPClasses: map[string]int{}}
	for _, in := range sh.Instances {
		study.SOPClasses[in.SOPClassUID]++
	}
	s.trail.Sending(auditlog.Actor{}, s.dest, patient, study)
	err := s.Sender.Send(ctx, sh)
	s.trail.Sent(auditlog.Actor{}, s.dest, err, patient, study)
	return err
}

// refuseResearchOnly answers 403 to principals with the research scope
// alone: they may have de-identified copies only, which no service but
// DICOMweb's serves (see researchGate). The refusal is audited as the use
// of a restricted function.
func (au *auditor) refuseResearchOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok || !p.ResearchOnly() {
			next.ServeHTTP(w, r)
			return
		}
		why := "the research scope gives de-identified copies only, which " + r.URL.Path + " does not serve"
		au.trail.Restricted(auditlog.Actor{User: p.Name, Addr: r.RemoteAddr}, why)
		h := w.Header()
		h.Set("WWW-Authenticate", `Bearer realm="pacsd", error="insufficient_scope", scope="read"`)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintln(w, "insufficient scope: "+why)
	})
}
