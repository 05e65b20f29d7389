package scp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/index"
)

// Index is what the query/retrieve providers need of the index.
type Index interface {
	Find(ctx context.Context, q *index.Query) iter.Seq2[*dicom.Dataset, error]
	FindInstances(ctx context.Context, q *index.Query) iter.Seq2[*index.Instance, error]
	CountInstances(ctx context.Context, q *index.Query) (int, error)
	// UnsupportedKeys returns the matching keys of q the index cannot
	// match on, or an error wrapping index.ErrInvalidQuery.
	UnsupportedKeys(q *index.Query) ([]tag.Tag, error)
}

// Objects opens archived objects.
type Objects interface {
	// OpenDataset opens the data set of an instance in transfer syntax
	// ts. The providers ask for the stored syntax and convert what they
	// send themselves, with their codec registry; they first ask for an
	// uncompressed syntax, which the archive gives for the instances it
	// compressed itself (rebuilt as received), and refuses for others
	// with an error wrapping dicom.ErrUnsupported.
	OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error)
}

// Remote is a DICOM application entity pacsd may connect to: a C-MOVE
// destination, a forwarding target.
type Remote struct {
	AETitle string
	Addr    string // host:port
	TLS     bool
}

// QR provides the Query/Retrieve service (PS3.4 Annex C): C-FIND, C-MOVE
// and C-GET over the index and the archive. Its methods implement
// dimse.FindHandler, dimse.MoveHandler and dimse.GetHandler.
type QR struct {
	AETitle string
	Index   Index
	Objects Objects
	// Remotes are the known move destinations, by AE title.
	Remotes map[string]Remote
	// MaxMatches ends a C-FIND with 0xA700 after this many matches (0:
	// no limit).
	MaxMatches int
	// CaseSensitiveNames makes PN matching case-sensitive.
	CaseSensitiveNames bool
	Logger             *slog.Logger
	// TLSConfig is used to reach remotes marked TLS.
	TLSConfig *tls.Config
	// Codecs converts instances to a transfer syntax the peer accepted
	// when it did not accept the stored one (nil: codec.New's defaults).
	Codecs *codec.Registry
}

var (
	_ dimse.FindHandler = (*QR)(nil)
	_ dimse.MoveHandler = (*QR)(nil)
	_ dimse.GetHandler  = (*QR)(nil)
)

func (s *QR) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// query turns a C-FIND, C-MOVE or C-GET identifier into an index query.
func (s *QR) query(model string, ident *dicom.Dataset) (*index.Query, error) {
	level, err := index.ParseLevel(ident.First(tag.QueryRetrieveLevel))
	if err != nil {
		return nil, dimse.Errorf(dimse.StatusDataSetMismatch, "Query/Retrieve Level %q: %v", ident.First(tag.QueryRetrieveLevel), err)
	}
	keys := &dicom.Dataset{}
	for _, e := range ident.Elements {
		switch e.Tag {
		case tag.QueryRetrieveLevel, tag.SpecificCharacterSet, tag.RetrieveAETitle, tag.InstanceAvailability:
			continue // answered here, not matched
		}
		keys.Elements = append(keys.Elements, e)
	}
	return &index.Query{
		Level:              level,
		Identifier:         keys,
		Hierarchical:       true,
		PatientRoot:        slices.Contains([]string{uid.PatientRootQueryRetrieveInformationModelFind, uid.PatientRootQueryRetrieveInformationModelMove, uid.PatientRootQueryRetrieveInformationModelGet}, model),
		CaseSensitiveNames: s.CaseSensitiveNames,
	}, nil
}

// queryStatus maps an index error onto a status.
func queryStatus(err error) error {
	var se *dimse.StatusError
	switch {
	case errors.As(err, &se):
		return err
	case errors.Is(err, index.ErrInvalidQuery):
		return &dimse.StatusError{Status: dimse.StatusDataSetMismatch, Comment: detail(err, index.ErrInvalidQuery), Err: err}
	}
	return &dimse.StatusError{Status: dimse.StatusUnableToProcess, Comment: err.Error(), Err: err}
}

// Find answers C-FIND from the index, streaming its matches.
func (s *QR) Find(ctx context.Context, a *dimse.Association, req *dimse.FindRequest) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		q, err := s.query(req.SOPClassUID, req.Identifier)
		if err != nil {
			yield(nil, err)
			return
		}
		q.Hierarchical = true
		unsupported, err := s.Index.UnsupportedKeys(q)
		if err != nil {
			yield(nil, queryStatus(err))
			return
		}
		if len(unsupported) > 0 {
			req.OptionalKeysNotSupported()
			s.log().Info("C-FIND matches some keys as return keys only", "keys", fmt.Sprint(unsupported))
		}
		level := req.Identifier.First(tag.QueryRetrieveLevel)
		n := 0
		for ds, err := range s.Index.Find(ctx, q) {
			if err != nil {
				yield(nil, queryStatus(err))
				return
			}
			if s.MaxMatches > 0 && n == s.MaxMatches {
				yield(nil, dimse.Errorf(dimse.StatusOutOfResources, "more than %d matches; narrow the query", s.MaxMatches))
				return
			}
			n++
			s.answer(ds, req, level)
			if !yield(ds, nil) {
				return
			}
		}
	}
}

// answer adds to a match what the SCP itself answers: the level, where
// to retrieve from, availability, and the character set its text is in.
func (s *QR) answer(ds *dicom.Dataset, req *dimse.FindRequest, level string) {
	add := func(t tag.Tag, vr, v string) {
		ds.Elements = slices.DeleteFunc(ds.Elements, func(e dicom.Element) bool { return e.Tag == t })
		ds.Elements = append(ds.Elements, dicom.Element{Tag: t, VR: vr, Values: []string{v}})
	}
	add(tag.QueryRetrieveLevel, "CS", level)
	// Where to retrieve a match from is answered whether asked or not
	// (PS3.4 C.4.1.1.3.2 lets the SCP add it); it is what a C-MOVE
	// needs next.
	add(tag.RetrieveAETitle, "AE", s.AETitle)
	if _, ok := req.Identifier.Find(tag.InstanceAvailability); ok {
		add(tag.InstanceAvailability, "CS", "ONLINE")
	}
	add(tag.SpecificCharacterSet, "CS", dicom.ResponseCharset(req.CharacterSets, ds))
	slices.SortFunc(ds.Elements, func(a, b dicom.Element) int { return int(int64(a.Tag) - int64(b.Tag)) })
}

// Move answers C-MOVE: it stores the matching instances at the
// destination over an association of its own.
func (s *QR) Move(ctx context.Context, a *dimse.Association, req *dimse.MoveRequest, progress func(dimse.SubOperations)) (dimse.SubOperations, error) {
	dest, ok := s.Remotes[req.Destination]
	if !ok {
		return dimse.SubOperations{}, dimse.Errorf(dimse.StatusMoveDestinationUnknown, "move destination %q is not configured", req.Destination)
	}
	q, err := s.query(req.SOPClassUID, req.Identifier)
	if err != nil {
		return dimse.SubOperations{}, err
	}
	plan, err := s.plan(ctx, q)
	if err != nil {
		return dimse.SubOperations{}, err
	}
	if plan.total == 0 {
		return dimse.SubOperations{}, nil
	}
	d := &dimse.Dialer{CallingAE: s.AETitle, CalledAE: dest.AETitle, Proposals: plan.proposals(s.codecs()), Logger: s.log()}
	peer, err := dialRemote(ctx, d, dest, s.TLSConfig)
	if err != nil {
		s.log().Warn("C-MOVE destination unreachable", "destination", req.Destination, "addr", dest.Addr, "err", err)
		return dimse.SubOperations{}, dimse.Errorf(dimse.StatusOutOfResourcesSubOperations, "cannot reach %s: %v", req.Destination, err)
	}
	subs := s.send(ctx, req.Stopped(), peer, q, plan.total, a.CallingAE(), req.MessageID, progress)
	if ctx.Err() != nil {
		// The requesting association is gone or the server's time is
		// up: nothing waits for the destination's goodbye.
		peer.Abort()
		return subs, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := peer.Release(rctx); err != nil && subs.Failed == 0 {
		s.log().Warn("C-MOVE destination association not released cleanly", "destination", req.Destination, "err", err)
	}
	return subs, nil
}

// Get answers C-GET: it stores the matching instances on the requesting
// association itself.
func (s *QR) Get(ctx context.Context, a *dimse.Association, req *dimse.GetRequest, progress func(dimse.SubOperations)) (dimse.SubOperations, error) {
	q, err := s.query(req.SOPClassUID, req.Identifier)
	if err != nil {
		return dimse.SubOperations{}, err
	}
	n, err := s.Index.CountInstances(ctx, q)
	if err != nil {
		return dimse.SubOperations{}, queryStatus(err)
	}
	return s.send(ctx, req.Stopped(), a, q, n, "", 0, progress), nil
}

// dialRemote opens an association to a remote, over TLS if it asks for it.
func dialRemote(ctx context.Context, d *dimse.Dialer, r Remote, tlsConfig *tls.Config) (*dimse.Association, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !r.TLS {
		return d.Dial(ctx, r.Addr)
	}
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(r.Addr)
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if tlsConfig != nil {
		cfg = tlsConfig.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return d.DialConn(ctx, tc)
}

// plan is what a C-MOVE will send: how many instances, and the SOP class
// and stored transfer syntax pairs to propose.
type plan struct {
	total int
	pairs [][2]string
}

func (s *QR) plan(ctx context.Context, q *index.Query) (*plan, error) {
	p := &plan{}
	seen := map[[2]string]bool{}
	for in, err := range s.Index.FindInstances(ctx, q) {
		if err != nil {
			return nil, queryStatus(err)
		}
		p.total++
		k := [2]string{in.SOPClassUID, in.TransferSyntaxUID}
		if !seen[k] {
			seen[k] = true
			p.pairs = append(p.pairs, k)
		}
	}
	return p, nil
}

// uncompressedSyntaxes are the syntaxes every stored syntax the codecs
// decode converts to, in the order pacsd proposes them.
var uncompressedSyntaxes = []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian, uid.DeflatedExplicitVRLittleEndian}

// proposals proposes, for each SOP class and stored transfer syntax, a
// presentation context holding that syntax alone, so that a destination
// that can take the data as stored is not led to choose another. Then,
// for each SOP class, a context of the uncompressed syntaxes, which every
// syntax the codecs decode converts to; one of the lossless compressed
// syntaxes they encode, for a destination that takes only compressed
// data; and one of the lossy ones, used only when the destination
// accepts nothing else. An association holds at most 128 contexts: the
// lossy, then the lossless ones are left out first, and pairs beyond
// that, their instances failing.
func (p *plan) proposals(reg *codec.Registry) []dimse.Proposal {
	var stored, plain, lossless, lossy []dimse.Proposal
	compressed, lossyTS := reg.Encodings()
	seen := map[string]bool{}
	for _, k := range p.pairs {
		stored = append(stored, dimse.Proposal{AbstractSyntax: k[0], TransferSyntaxes: []string{k[1]}})
		if seen[k[0]] {
			continue
		}
		seen[k[0]] = true
		plain = append(plain, dimse.Proposal{AbstractSyntax: k[0], TransferSyntaxes: uncompressedSyntaxes})
		lossless = append(lossless, dimse.Proposal{AbstractSyntax: k[0], TransferSyntaxes: compressed})
		lossy = append(lossy, dimse.Proposal{AbstractSyntax: k[0], TransferSyntaxes: lossyTS})
	}
	out := slices.Concat(stored, plain, lossless, lossy)
	if len(out) > 128 {
		out = out[:128]
	}
	return out
}

// storer is the side of an association that sends C-STOREs: an
// association pacsd requested (C-MOVE) or the one a C-GET came on.
type storer interface {
	Store(ctx context.Context, req *dimse.StoreRequest) (dimse.Status, error)
	Contexts() []dimse.PresentationContext
	Done() <-chan struct{}
}

// send stores every instance q finds through peer, counting the
// sub-operations and reporting them after each. Instances are opened, and
// converted where need be, a few ahead of the one being sent (prepare),
// so that conversion runs on the other CPUs while the network works. It
// starts no new sub-operation once stopped is closed (C-CANCEL, shutdown):
// the one in flight then is finished and counted as what it came to,
// since ctx is not cancelled by a stop, and the counts so far are
// returned.
func (s *QR) send(ctx context.Context, stopped <-chan struct{}, peer storer, q *index.Query, total int, originator string, originatorID uint16, progress func(dimse.SubOperations)) dimse.SubOperations {
	subs := dimse.SubOperations{Remaining: total}
	fail := func(in *index.Instance, why error) {
		subs.Failed++
		subs.FailedInstances = append(subs.FailedInstances, in.SOPInstanceUID)
		s.log().Warn("sub-operation failed", "sop_instance_uid", in.SOPInstanceUID, "err", why)
	}
	ahead, done := s.prepare(ctx, peer, q)
	defer done()
	for p := range ahead {
		if p.indexErr != nil {
			s.log().Warn("retrieve: index failed mid-way", "err", p.indexErr)
			break
		}
		if ctx.Err() != nil || isClosed(stopped) {
			p.close()
			break
		}
		subs.Remaining--
		select {
		case <-peer.Done():
			p.close()
			fail(p.in, errors.New("the destination ended the association"))
			progress(subs)
			continue
		default:
		}
		st, err := s.store(ctx, peer, p, originator, originatorID)
		switch {
		case err != nil:
			fail(p.in, err)
		case st.IsWarning():
			subs.Warning++
		default:
			subs.Completed++
		}
		progress(subs)
	}
	if subs.Remaining < 0 {
		subs.Remaining = 0
	}
	return subs
}

// prepared is an instance to send, opened (and converted) ahead of its
// turn unless it is large.
type prepared struct {
	in       *index.Instance
	indexErr error // the index failed instead of naming an instance
	lazy     bool  // opened only when its turn comes
	ready    chan struct{}
	out      *outgoing
	err      error
}

// close closes what was opened for p, once its opening has ended.
func (p *prepared) close() {
	if p.lazy {
		return
	}
	<-p.ready
	if p.out != nil {
		p.out.Dataset.Close()
		p.out = nil
	}
}

// openAhead bounds the stored size of an instance opened ahead of its
// turn: a conversion holds at most holdBack bytes of its output and the
// frames it is converting, which for an object of this size stay small.
const openAhead = 1 << 20

// prepare finds the instances of q and opens them in order, up to
// GOMAXPROCS (at most 4) at once and as many ahead of the one being
// sent, each converted to a syntax peer accepted for its class. done
// stops it and closes what was opened and not taken.
func (s *QR) prepare(ctx context.Context, peer storer, q *index.Query) (ahead <-chan *prepared, done func()) {
	workers := min(runtime.GOMAXPROCS(0), 4)
	out := make(chan *prepared, workers)
	quit := make(chan struct{})
	sem := make(chan struct{}, workers)
	go func() {
		defer close(out)
		for in, err := range s.Index.FindInstances(ctx, q) {
			p := &prepared{in: in, indexErr: err, ready: make(chan struct{})}
			switch {
			case err != nil:
				close(p.ready)
			case in.Size > openAhead:
				p.lazy = true
			default:
				select {
				case sem <- struct{}{}:
				case <-quit:
					return
				}
				go func() {
					defer func() { <-sem }()
					p.out, p.err = s.open(ctx, in, accepted(peer, in.SOPClassUID))
					close(p.ready)
				}()
			}
			select {
			case out <- p:
			case <-quit:
				p.close()
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out, func() {
		close(quit)
		for p := range out {
			p.close()
		}
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// store sends one archived instance, in its stored transfer syntax if the
// peer accepted it, or converted to one it accepted (open), and closes it.
func (s *QR) store(ctx context.Context, peer storer, p *prepared, originator string, originatorID uint16) (dimse.Status, error) {
	if p.lazy {
		p.out, p.err = s.open(ctx, p.in, accepted(peer, p.in.SOPClassUID))
	} else {
		<-p.ready
	}
	if p.err != nil {
		return 0, p.err
	}
	defer p.out.Dataset.Close()
	return peer.Store(ctx, &dimse.StoreRequest{
		SOPClassUID:             p.in.SOPClassUID,
		SOPInstanceUID:          p.out.SOPInstanceUID,
		TransferSyntaxUID:       p.out.TransferSyntax,
		MoveOriginatorAE:        originator,
		MoveOriginatorMessageID: originatorID,
		Dataset:                 p.out.Dataset,
	})
}
