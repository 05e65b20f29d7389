package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/internal/dcmgen"
)

// The DICOMweb measurements, pacsd beside Orthanc's DICOMweb plugin:
//
//   - STOW-RS: the series of the C-STORE measurement in one POST, into
//     fresh peers, rounds alternating the peers;
//   - QIDO-RS: study searches on the corpus of the C-FIND measurement,
//     served by the same loaded peers;
//   - WADO-RS metadata of a series of -metadata-instances instances;
//   - WADO-RS retrieve of the series of the C-STORE measurement, beside
//     reading the same objects' files straight from pacsd's storage
//     directory, and beside a plain net/http server of this program
//     sending those files, which shows what HTTP over loopback costs.
//
// Every request comes from this program's Go HTTP client and is timed
// from sending it to the last byte of the response, decompressed where the
// peer compressed it; every answer is checked against what the peer was
// given.

// Accept headers, as PS3.18 names the media types.
const (
	acceptJSON  = "application/dicom+json"
	acceptDICOM = `multipart/related; type="application/dicom"; transfer-syntax=*`
)

// readBufferSize is the size of the reads of a retrieve's body and of the
// raw reads of the files it is compared with: the same for both, and
// large enough that neither is bound by the number of system calls.
const readBufferSize = 256 << 10

// newWebClient returns a client with one pool of keep-alive connections.
// It asks for gzip itself (as a browser does) and decompresses, so that
// it can count the bytes on the wire.
func newWebClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 4,
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
		WriteBufferSize:     64 << 10,
	}}
}

// webResponse is one timed request.
type webResponse struct {
	status   int
	header   http.Header
	body     []byte // decompressed; nil when discarded
	wire     int64  // bytes of the body as sent
	size     int64  // bytes of the body decompressed
	wall     time.Duration
	reused   bool // whether the request went over a kept-alive connection
	peerCPU  time.Duration
	peerRead bool
}

// get sends GET url with accept and reads the whole body, decompressing
// it if the peer compressed it; with keep false it counts the body's
// bytes and discards them. The time is taken from sending the request to
// the last byte.
func get(ctx context.Context, c *http.Client, s *server, url, accept string, keep bool) (*webResponse, error) {
	res := &webResponse{}
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { res.reused = i.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Encoding", "gzip")
	cpu0, err0 := procCPU(s.pid)
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	wire := &countingReader{r: resp.Body}
	var body io.Reader = wire
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(wire)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", url, err)
		}
		body = zr
	}
	if keep {
		res.body, err = io.ReadAll(body)
		res.size = int64(len(res.body))
	} else {
		res.size, err = drain(body)
	}
	res.wall = time.Since(start)
	cpu1, err1 := procCPU(s.pid)
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading the body: %w", url, err)
	}
	res.status, res.header, res.wire = resp.StatusCode, resp.Header, wire.n
	res.peerCPU, res.peerRead = cpu1-cpu0, err0 == nil && err1 == nil
	if res.status != http.StatusOK {
		return res, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bodyStart(res.body))
	}
	return res, nil
}

func bodyStart(b []byte) string {
	if len(b) > 300 {
		b = b[:300]
	}
	return strings.TrimSpace(string(b))
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// drain reads r to its end in reads of readBufferSize and returns the
// number of bytes.
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, readBufferSize)
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// ---- STOW-RS ----

// stowRun is one STOW-RS of the series into one fresh peer.
type stowRun struct {
	round, slot int
	peer        string
	wall        time.Duration // request sent to the last byte of the response
	peerCPU     time.Duration
	peerRead    bool
}

// measureStow stores the series with STOW-RS into every peer, o.rounds
// times, rotating the order of the peers by one each round.
func measureStow(ctx context.Context, o options, peers []peer, tmp string, files []dcmgen.File, logf func(string, ...any)) ([]stowRun, error) {
	var runs []stowRun
	for round := range o.rounds {
		for slot := range peers {
			p := peers[(round+slot)%len(peers)]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res, err := stowInto(ctx, p, filepath.Join(tmp, fmt.Sprintf("stow-%s-%d", p.name, round+1)), files)
			if err != nil {
				return nil, fmt.Errorf("STOW-RS round %d, %s: %w", round+1, p.name, err)
			}
			res.round, res.slot, res.peer = round+1, slot+1, p.name
			logf("STOW-RS round %d/%d  %-12s %7.3f s  %7.1f instances/s", round+1, o.rounds, p.name,
				res.wall.Seconds(), perSecond(len(files), res.wall))
			runs = append(runs, res)
		}
	}
	return runs, nil
}

// stowInto starts p in the new directory dir, sends it files in one
// STOW-RS request, checks the response and that p then holds every
// instance, and removes the peer and its directory again. As before
// storescu, the machine's dirty pages are written out first.
func stowInto(ctx context.Context, p peer, dir string, files []dcmgen.File) (res stowRun, err error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return res, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	s, err := p.start(ctx, dir)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	if s.web == "" {
		return res, fmt.Errorf("%s serves no DICOMweb", p.name)
	}
	client := newWebClient()
	defer client.CloseIdleConnections()
	body, err := newFilesBody(files)
	if err != nil {
		return res, err
	}
	defer body.Close()
	url := s.web + "/studies"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		return res, err
	}
	req.ContentLength = body.size
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+body.boundary)
	req.Header.Set("Accept", acceptJSON)
	syscall.Sync()
	cpu0, err0 := procCPU(s.pid)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return res, fmt.Errorf("POST %s: %w; see %s", url, err, s.log)
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	res.wall = time.Since(start)
	cpu1, err1 := procCPU(s.pid)
	res.peerCPU, res.peerRead = cpu1-cpu0, err0 == nil && err1 == nil
	if err != nil {
		return res, fmt.Errorf("POST %s: reading the response: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("POST %s: %s: %s; see %s", url, resp.Status, bodyStart(answer), s.log)
	}
	if err := checkStowResponse(answer, files); err != nil {
		return res, fmt.Errorf("POST %s: %w", url, err)
	}
	if got, err := s.stored(ctx); err != nil || got != len(files) {
		return res, fmt.Errorf("%s holds %d of %d instances after STOW-RS (%v); see %s", p.name, got, len(files), err, s.log)
	}
	return res, nil
}

// checkStowResponse checks a Store Instances Response: every instance
// referenced, none failed.
func checkStowResponse(answer []byte, files []dcmgen.File) error {
	var ds map[string]jsonAttr
	if err := json.Unmarshal(answer, &ds); err != nil {
		return fmt.Errorf("response is not a DICOM JSON object: %w", err)
	}
	if failed := ds["00081198"].Value; len(failed) > 0 {
		return fmt.Errorf("%d instances failed: %s", len(failed), bodyStart(answer))
	}
	want := map[string]bool{}
	for _, f := range files {
		want[f.SOPInstanceUID] = true
	}
	for _, raw := range ds["00081199"].Value {
		var item map[string]jsonAttr
		if err := json.Unmarshal(raw, &item); err != nil {
			return fmt.Errorf("ReferencedSOPSequence: %w", err)
		}
		delete(want, item["00081155"].first())
	}
	if len(want) > 0 {
		return fmt.Errorf("%d of %d instances are not in the ReferencedSOPSequence", len(want), len(files))
	}
	return nil
}

// filesBody is a multipart/related body of files, one application/dicom
// part each, read from the files as it is sent, whose length is known
// beforehand so that the request has a Content-Length.
type filesBody struct {
	boundary string
	size     int64
	segments []bodySegment
	next     int
	r        io.Reader
	f        *os.File
}

// bodySegment is text of the body or a file to be copied into it.
type bodySegment struct {
	text string
	path string
}

func newFilesBody(files []dcmgen.File) (*filesBody, error) {
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	b := &filesBody{boundary: hex.EncodeToString(rnd[:])}
	add := func(sg bodySegment, size int64) {
		b.segments = append(b.segments, sg)
		b.size += size
	}
	for i, f := range files {
		fi, err := os.Stat(f.Path)
		if err != nil {
			return nil, err
		}
		head := "--" + b.boundary + "\r\nContent-Type: application/dicom\r\n\r\n"
		if i > 0 {
			head = "\r\n" + head
		}
		add(bodySegment{text: head}, int64(len(head)))
		add(bodySegment{path: f.Path}, fi.Size())
	}
	tail := "\r\n--" + b.boundary + "--\r\n"
	add(bodySegment{text: tail}, int64(len(tail)))
	return b, nil
}

func (b *filesBody) Read(p []byte) (int, error) {
	for {
		if b.r == nil {
			if b.next == len(b.segments) {
				return 0, io.EOF
			}
			sg := b.segments[b.next]
			b.next++
			if sg.path == "" {
				b.r = strings.NewReader(sg.text)
				continue
			}
			f, err := os.Open(sg.path)
			if err != nil {
				return 0, err
			}
			b.f, b.r = f, f
		}
		n, err := b.r.Read(p)
		if err == io.EOF {
			b.closeFile()
			b.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (b *filesBody) closeFile() {
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
}

// Close closes the file being read, if a request ended early.
func (b *filesBody) Close() error {
	b.closeFile()
	return nil
}

// ---- DICOM JSON answers ----

// jsonAttr is an attribute of a DICOM JSON object (PS3.18 F.2).
type jsonAttr struct {
	VR    string            `json:"vr"`
	Value []json.RawMessage `json:"Value"`
}

// strings returns the values as text: strings as they are, numbers in
// their shortest form, person names by their alphabetic group.
func (a jsonAttr) strings() []string {
	var out []string
	for _, raw := range a.Value {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			continue
		}
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case float64:
			out = append(out, strconv.FormatFloat(v, 'f', -1, 64))
		case map[string]any:
			s, _ := v["Alphabetic"].(string)
			out = append(out, s)
		}
	}
	return out
}

func (a jsonAttr) first() string {
	if s := a.strings(); len(s) > 0 {
		return s[0]
	}
	return ""
}

// ---- QIDO-RS ----

// qidoKinds are the study searches of the mix. Each is made from a study
// of the corpus, except PatientName=A*, which is always the same. All ask
// for Study Description besides the defaults, as a viewer's study list
// does (Orthanc's plugin leaves it out otherwise).
var qidoKinds = []struct {
	name  string
	limit int // 0: none
	// key returns the matching key and its value; "" for none.
	key   func(st *findStudy) (string, string)
	match func(st *findStudy, value string) bool
}{
	{"PatientName=A*", 0,
		func(*findStudy) (string, string) { return "PatientName", "A*" },
		func(st *findStudy, v string) bool {
			return strings.HasPrefix(strings.ToUpper(st.patientName), strings.TrimSuffix(v, "*"))
		}},
	{"StudyDate, 30 days, limit=100", 100,
		func(st *findStudy) (string, string) { return "StudyDate", st.date + "-" + day(st.date, 29) },
		func(st *findStudy, v string) bool {
			lo, hi, _ := strings.Cut(v, "-")
			return st.date >= lo && st.date <= hi
		}},
	{"PatientID, limit=100", 100,
		func(st *findStudy) (string, string) { return "PatientID", st.patientID },
		func(st *findStudy, v string) bool { return st.patientID == v }},
	{"no key, limit=101 (a study list's first page)", 101,
		func(*findStudy) (string, string) { return "", "" },
		func(*findStudy, string) bool { return true }},
}

// qidoInclude is the includefield of every search: Study Description.
const qidoInclude = "00081030"

// qidoQuery is one search of the sequence, with the studies it may find.
type qidoQuery struct {
	kind  int
	query string // URL query
	want  map[string]*findStudy
	count int // matches it must return: all of want, or limit of them
}

func newQidoQuery(c *findCorpus, kind int, st *findStudy) qidoQuery {
	k := qidoKinds[kind]
	v := url.Values{}
	key, value := k.key(st)
	if key != "" {
		v.Set(key, value)
	}
	if k.limit > 0 {
		v.Set("limit", strconv.Itoa(k.limit))
	}
	v.Set("includefield", qidoInclude)
	// A wildcard goes unescaped, as browsers send it: Orthanc's plugin
	// matches "%2A" as a literal character.
	q := qidoQuery{kind: kind, query: strings.ReplaceAll(v.Encode(), "%2A", "*"), want: map[string]*findStudy{}}
	for _, s := range c.studies {
		if k.match(s, value) {
			q.want[s.uid] = s
		}
	}
	q.count = len(q.want)
	if k.limit > 0 {
		q.count = min(q.count, k.limit)
	}
	return q
}

// check compares a peer's answer with the corpus: the studies matched,
// and the attributes a study list shows.
func (q qidoQuery) check(status int, body []byte) (int, error) {
	if status == http.StatusNoContent && q.count == 0 {
		return 0, nil
	}
	var matches []map[string]jsonAttr
	if err := json.Unmarshal(body, &matches); err != nil {
		return 0, fmt.Errorf("?%s: answer is not a DICOM JSON array: %w", q.query, err)
	}
	seen := map[string]bool{}
	for _, m := range matches {
		u := m["0020000D"].first()
		st, ok := q.want[u]
		switch {
		case !ok:
			return 0, fmt.Errorf("?%s: study %q does not match", q.query, u)
		case seen[u]:
			return 0, fmt.Errorf("?%s: study %s answered twice", q.query, u)
		}
		seen[u] = true
		if got := m["00201208"].first(); got != strconv.Itoa(studySize) {
			return 0, fmt.Errorf("?%s: study %s has NumberOfStudyRelatedInstances %q, want %d", q.query, u, got, studySize)
		}
		mods := m["00080061"].strings()
		slices.Sort(mods)
		if !slices.Equal(mods, st.modalities) {
			return 0, fmt.Errorf("?%s: study %s has ModalitiesInStudy %q, want %q", q.query, u, mods, st.modalities)
		}
		if got := m["00080050"].first(); got != st.accession {
			return 0, fmt.Errorf("?%s: study %s has AccessionNumber %q, want %q", q.query, u, got, st.accession)
		}
		if got := m["00081030"].first(); got != st.description {
			return 0, fmt.Errorf("?%s: study %s has StudyDescription %q, want %q", q.query, u, got, st.description)
		}
		if got := m["00100010"].first(); got != st.patientName {
			return 0, fmt.Errorf("?%s: study %s has PatientName %q, want %q", q.query, u, got, st.patientName)
		}
	}
	if len(seen) != q.count {
		return 0, fmt.Errorf("?%s: %d matches, want %d", q.query, len(seen), q.count)
	}
	return len(seen), nil
}

// webSample is one timed request of the read measurements.
type webSample struct {
	peer     string
	kind     int // of qidoKinds; 0 for metadata and retrieves
	wall     time.Duration
	wire     int64
	size     int64
	matches  int
	reused   bool
	encoding string // Content-Encoding
	peerCPU  time.Duration
	peerRead bool
}

func sampleOf(peer string, kind int, r *webResponse) webSample {
	return webSample{peer: peer, kind: kind, wall: r.wall, wire: r.wire, size: r.size, reused: r.reused,
		encoding: r.header.Get("Content-Encoding"), peerCPU: r.peerCPU, peerRead: r.peerRead}
}

// webPeer is a peer of the corpus with its HTTP client.
type webPeer struct {
	name   string
	s      *server
	client *http.Client
}

func webPeers(cp *corpusPeers) ([]*webPeer, error) {
	var wps []*webPeer
	for i, s := range cp.servers {
		if s.web == "" {
			return nil, fmt.Errorf("%s serves no DICOMweb", cp.peers[i])
		}
		wps = append(wps, &webPeer{name: cp.peers[i], s: s, client: newWebClient()})
	}
	return wps, nil
}

// qidoResult is the QIDO-RS measurement.
type qidoResult struct {
	peers     []string
	samples   []webSample
	reps      int
	aMatches  int // studies PatientName=A* matches
	studies   int
	queryText []string // an example URL query of each kind
}

// measureQido sends every peer of cp the same sequence of searches, one
// keep-alive connection per peer, the peers taking turns to go first.
func measureQido(ctx context.Context, o options, cp *corpusPeers, logf func(string, ...any)) (*qidoResult, error) {
	wps, err := webPeers(cp)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, wp := range wps {
			wp.client.CloseIdleConnections()
		}
	}()
	c := cp.corpus
	res := &qidoResult{peers: cp.peers, reps: o.webReps, studies: len(c.studies)}
	res.aMatches = newQidoQuery(c, 0, nil).count
	rng := mrand.New(mrand.NewPCG(5, 6))
	began := time.Now()
	for rep := range o.webReps + 1 {
		switch {
		case rep == 1:
			logf("QIDO-RS: %d repetitions of %d searches per peer", o.webReps, len(qidoKinds))
		case rep > 1 && (rep-1)%20 == 0:
			logf("QIDO-RS: %d repetitions done in %.1f s", rep-1, time.Since(began).Seconds())
		}
		for kind := range qidoKinds {
			q := newQidoQuery(c, kind, c.studies[rng.IntN(len(c.studies))])
			if rep == 0 {
				res.queryText = append(res.queryText, "/studies?"+q.query)
			}
			for i := range wps {
				wp := wps[(i+rep+kind)%len(wps)]
				r, err := get(ctx, wp.client, wp.s, wp.s.web+"/studies?"+q.query, acceptJSON, true)
				if err != nil && (r == nil || r.status != http.StatusNoContent) {
					return nil, fmt.Errorf("QIDO-RS, %s: %w", wp.name, err)
				}
				n, err := q.check(r.status, r.body)
				if err != nil {
					return nil, fmt.Errorf("QIDO-RS, %s: %w", wp.name, err)
				}
				if rep == 0 {
					continue
				}
				sm := sampleOf(wp.name, kind, r)
				sm.matches = n
				res.samples = append(res.samples, sm)
			}
		}
	}
	return res, nil
}

// ---- WADO-RS: metadata and retrieve ----

// webSeries is a series loaded into the corpus peers for the metadata
// and retrieve measurements.
type webSeries struct {
	study, series string
	files         []dcmgen.File
	bytes         int64
}

func newWebSeries(files []dcmgen.File) *webSeries {
	s := &webSeries{study: files[0].StudyInstanceUID, series: files[0].SeriesInstanceUID, files: files}
	for _, f := range files {
		s.bytes += f.Size
	}
	return s
}

func (s *webSeries) path() string { return "/studies/" + s.study + "/series/" + s.series }

// loadWebSeries writes the metadata series into dir and stores it and the
// series of the C-STORE measurement (in seriesDir) into every peer of cp
// with one storescu each.
func loadWebSeries(ctx context.Context, o options, cp *corpusPeers, dir, seriesDir string, series []dcmgen.File, logf func(string, ...any)) (meta, retrieve *webSeries, err error) {
	logf("DICOMweb: writing a series of %d instances of %s for the metadata measurement", o.metadataInstances, o.size)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	tmpl := dcmgen.Instance{
		Patient: dcmgen.Patient{Name: "Zimmermann^Olga", ID: "METADATA1", BirthDate: "19610412", Sex: "F"},
		Study:   dcmgen.Study{Date: "20250102", Time: "101500", AccessionNumber: "METADATA1", Description: "CT Chest thin slices"},
		Series:  dcmgen.Series{Modality: "CT", Number: 3, Description: "CT Chest 0.625 mm"},
	}
	files, err := dcmgen.WriteSeries(dir, o.metadataInstances, int64(o.size), tmpl)
	if err != nil {
		return nil, nil, err
	}
	meta, retrieve = newWebSeries(files), newWebSeries(series)
	for i, s := range cp.servers {
		before, err := s.stored(ctx)
		if err != nil {
			return nil, nil, err
		}
		logf("DICOMweb: storing both series into %s", cp.peers[i])
		if _, err := send(ctx, s, true, dir, seriesDir); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", cp.peers[i], err)
		}
		want := before + len(files) + len(series)
		if got, err := s.stored(ctx); err != nil || got != want {
			return nil, nil, fmt.Errorf("%s holds %d of %d instances after storing the series (%v); see %s", cp.peers[i], got, want, err, s.log)
		}
	}
	syscall.Sync()
	return meta, retrieve, nil
}

// metadataResult is the metadata measurement.
type metadataResult struct {
	series  *webSeries
	peers   []string
	samples []webSample
	reps    int
}

// measureMetadata asks every peer for the metadata of the series, o.metadataReps
// times after one untimed request each, the peers taking turns to go first,
// and checks that every answer describes every instance of the series.
func measureMetadata(ctx context.Context, o options, cp *corpusPeers, ws *webSeries, logf func(string, ...any)) (*metadataResult, error) {
	wps, err := webPeers(cp)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, wp := range wps {
			wp.client.CloseIdleConnections()
		}
	}()
	res := &metadataResult{series: ws, peers: cp.peers, reps: o.metadataReps}
	logf("WADO-RS metadata: %d repetitions per peer", o.metadataReps)
	for rep := range o.metadataReps + 1 {
		for i := range wps {
			wp := wps[(i+rep)%len(wps)]
			r, err := get(ctx, wp.client, wp.s, wp.s.web+ws.path()+"/metadata", acceptJSON, true)
			if err != nil {
				return nil, fmt.Errorf("WADO-RS metadata, %s: %w", wp.name, err)
			}
			if err := checkMetadata(r.body, ws); err != nil {
				return nil, fmt.Errorf("WADO-RS metadata, %s: %w", wp.name, err)
			}
			if rep > 0 {
				res.samples = append(res.samples, sampleOf(wp.name, 0, r))
			}
		}
	}
	return res, nil
}

// checkMetadata checks that the metadata describes each instance of the
// series once, with its Study and Series Instance UIDs.
func checkMetadata(body []byte, ws *webSeries) error {
	var items []map[string]jsonAttr
	if err := json.Unmarshal(body, &items); err != nil {
		return fmt.Errorf("answer is not a DICOM JSON array: %w", err)
	}
	want := map[string]bool{}
	for _, f := range ws.files {
		want[f.SOPInstanceUID] = true
	}
	for _, it := range items {
		sop := it["00080018"].first()
		if !want[sop] {
			return fmt.Errorf("instance %q is not in the series, or answered twice", sop)
		}
		delete(want, sop)
		if it["0020000D"].first() != ws.study || it["0020000E"].first() != ws.series {
			return fmt.Errorf("instance %s: study %q, series %q", sop, it["0020000D"].first(), it["0020000E"].first())
		}
		if _, ok := it["00280010"]; !ok {
			return fmt.Errorf("instance %s: no Rows", sop)
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("%d of %d instances missing", len(want), len(ws.files))
	}
	return nil
}

// The sources of the retrieve measurement besides the peers.
const (
	rawPeer     = "raw read"
	refPeer     = "net/http"
	retrieveRef = "a net/http server of this program, sending the same files as one multipart/related body"
)

// retrieveResult is the retrieve measurement.
type retrieveResult struct {
	series  *webSeries
	peers   []string // rawPeer and refPeer first
	samples []webSample
	bytes   map[string]int64 // the objects' bytes each source sent or read
	reps    int
}

// measureRetrieve retrieves the series from every peer with WADO-RS,
// reads the files of pacsd's storage that hold the series' objects, and
// retrieves the same files from a plain net/http server of this program,
// in turns, o.wadoReps times after one untimed pass that also checks
// every part of every answer.
func measureRetrieve(ctx context.Context, o options, cp *corpusPeers, ws *webSeries, logf func(string, ...any)) (*retrieveResult, error) {
	wps, err := webPeers(cp)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, wp := range wps {
			wp.client.CloseIdleConnections()
		}
	}()
	var pacsd *server
	for _, wp := range wps {
		if wp.s.objects != "" {
			pacsd = wp.s
		}
	}
	if pacsd == nil {
		return nil, errors.New("WADO-RS: no pacsd among the peers")
	}
	dir := filepath.Join(pacsd.objects, ws.study, ws.series)
	paths, err := filepath.Glob(filepath.Join(dir, "*.dcm"))
	if err != nil {
		return nil, err
	}
	if len(paths) != len(ws.files) {
		return nil, fmt.Errorf("WADO-RS: %d files in %s, want %d", len(paths), dir, len(ws.files))
	}
	// pacsd keeps the data set as it was received but writes File Meta
	// Information of its own, so its parts must have the sizes of its
	// files rather than of the files sent.
	stored := map[string]int64{}
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		// The key names a version after the SOP Instance UID.
		loc, ok := archive.ParseKey(ws.study + "/" + ws.series + "/" + filepath.Base(path))
		if !ok {
			return nil, fmt.Errorf("WADO-RS: %s is not an object pacsd wrote", path)
		}
		stored[loc.SOPInstanceUID] = fi.Size()
	}
	ref, err := serveFiles(paths)
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	refWP := &webPeer{name: refPeer, s: &server{pid: os.Getpid(), web: "http://" + ref.Addr}, client: newWebClient()}
	defer refWP.client.CloseIdleConnections()

	// The sources take turns; each is a function of whether it is the
	// untimed first pass.
	type source struct {
		name string
		get  func(first bool) (webSample, int64, error)
	}
	sources := []source{{rawPeer, func(bool) (webSample, int64, error) {
		start := time.Now()
		n, err := readFiles(paths)
		return webSample{peer: rawPeer, wall: time.Since(start), size: n, wire: n}, n, err
	}}}
	for _, wp := range append([]*webPeer{refWP}, wps...) {
		sizes := stored
		if wp.s != pacsd && wp != refWP {
			sizes = nil
		}
		url := wp.s.web + ws.path()
		sources = append(sources, source{wp.name, func(first bool) (webSample, int64, error) {
			r, err := get(ctx, wp.client, wp.s, url, acceptDICOM, first)
			if err != nil {
				return webSample{}, 0, err
			}
			n := r.size
			if first {
				if n, err = checkRetrieve(r, ws, sizes); err != nil {
					return webSample{}, 0, err
				}
			}
			return sampleOf(wp.name, 0, r), n, nil
		}})
	}
	res := &retrieveResult{series: ws, bytes: map[string]int64{}, reps: o.wadoReps}
	for _, src := range sources {
		res.peers = append(res.peers, src.name)
	}
	logf("WADO-RS retrieve: %d repetitions of each source", o.wadoReps)
	for rep := range o.wadoReps + 1 {
		for i := range sources {
			src := sources[(i+rep)%len(sources)]
			sm, n, err := src.get(rep == 0)
			if err != nil {
				return nil, fmt.Errorf("WADO-RS, %s: %w", src.name, err)
			}
			if rep == 0 {
				res.bytes[src.name] = n
			} else {
				res.samples = append(res.samples, sm)
			}
		}
	}
	return res, nil
}

// serveFiles starts an HTTP server on 127.0.0.1 in this process that
// answers every GET with the files as one multipart/related body, each
// part copied from its file as pacsd copies from its store, as a
// reference for what HTTP over loopback costs on this machine.
func serveFiles(paths []string) (*http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Addr: ln.Addr().String(), ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mw := multipart.NewWriter(w)
		w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
		buf := make([]byte, 1<<20)
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				panic(http.ErrAbortHandler)
			}
			h := textproto.MIMEHeader{}
			h.Set("Content-Type", "application/dicom")
			pw, err := mw.CreatePart(h)
			if err == nil {
				_, err = io.CopyBuffer(pw, struct{ io.Reader }{f}, buf)
			}
			f.Close()
			if err != nil {
				panic(http.ErrAbortHandler)
			}
		}
		mw.Close()
	})}
	go srv.Serve(ln)
	return srv, nil
}

// readFiles reads the files one after the other, as the retrieves read
// their bodies, and returns the number of bytes.
func readFiles(paths []string) (int64, error) {
	var n int64
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return n, err
		}
		m, err := drain(f)
		f.Close()
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// checkRetrieve checks a multipart/related answer: one Part-10 object of
// each instance of the series, each of the size in sizes unless sizes is
// nil. It returns the objects' bytes.
func checkRetrieve(r *webResponse, ws *webSeries, sizes map[string]int64) (int64, error) {
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		return 0, fmt.Errorf("Content-Type %q is not multipart/related with a boundary", r.header.Get("Content-Type"))
	}
	want := map[string]bool{}
	for _, f := range ws.files {
		want[f.SOPInstanceUID] = true
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var total int64
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return 0, err
		}
		fm, _, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return 0, fmt.Errorf("part %d: %w", len(ws.files)-len(want)+1, err)
		}
		if !want[fm.MediaStorageSOPInstanceUID] {
			return 0, fmt.Errorf("instance %q is not in the series, or sent twice", fm.MediaStorageSOPInstanceUID)
		}
		if size, ok := sizes[fm.MediaStorageSOPInstanceUID]; sizes != nil && (!ok || int64(len(b)) != size) {
			return 0, fmt.Errorf("instance %s: %d bytes, its stored object has %d", fm.MediaStorageSOPInstanceUID, len(b), size)
		}
		delete(want, fm.MediaStorageSOPInstanceUID)
		total += int64(len(b))
	}
	if len(want) > 0 {
		return 0, fmt.Errorf("%d of %d instances missing", len(want), len(ws.files))
	}
	return total, nil
}

// ---- the report ----

// webResult is the whole DICOMweb measurement.
type webResult struct {
	stows    []stowRun
	qido     *qidoResult
	metadata *metadataResult
	retrieve *retrieveResult
}

// ms returns the times of samples of peer (and kind, unless kind is -1)
// in milliseconds, sorted.
func ms(samples []webSample, peer string, kind int) []float64 {
	var out []float64
	for _, s := range samples {
		if s.peer == peer && (kind < 0 || s.kind == kind) {
			out = append(out, float64(s.wall)/float64(time.Millisecond))
		}
	}
	slices.Sort(out)
	return out
}

// connections describes how the requests to each peer were carried and
// encoded: the share of them on a kept-alive connection, and the
// Content-Encodings the peer chose.
func connections(samples []webSample, peers []string) string {
	var parts []string
	for _, name := range peers {
		n, reused := 0, 0
		enc := map[string]bool{}
		for _, s := range samples {
			if s.peer != name {
				continue
			}
			n++
			if s.reused {
				reused++
			}
			e := s.encoding
			if e == "" {
				e = "identity"
			}
			enc[e] = true
		}
		if n == 0 {
			continue
		}
		encs := slices.Sorted(func(yield func(string) bool) {
			for e := range enc {
				if !yield(e) {
					return
				}
			}
		})
		parts = append(parts, fmt.Sprintf("%s %d%% on a kept-alive connection, %s", name, 100*reused/n, strings.Join(encs, "/")))
	}
	return strings.Join(parts, "; ")
}

// medianOf returns the median of f over the samples of peer.
func medianOf(samples []webSample, peer string, f func(webSample) float64) float64 {
	var xs []float64
	for _, s := range samples {
		if s.peer == peer {
			xs = append(xs, f(s))
		}
	}
	return median(xs)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// printWeb prints the DICOMweb measurement.
func (r *report) printWeb(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	wr := r.web
	if wr == nil {
		p("DICOMweb: not measured (-skip-web)")
		p("")
		return
	}
	if r.versions.orthancWeb != "" {
		p("DICOMweb, pacsd beside Orthanc's DICOMweb plugin (%s, Debian package)", r.versions.orthancWeb)
	} else {
		p("DICOMweb, pacsd alone (-skip-orthanc)")
	}
	p("client    this program's Go net/http client, one pool of keep-alive connections per peer; GETs send")
	p("          Accept-Encoding: gzip, as a browser does, and a compressed answer is decompressed; every time runs")
	p("          from sending the request to the last byte of the answer (decompressed), and every answer is checked")
	p("")
	r.printStow(w)
	if wr.qido != nil {
		if r.find == nil {
			p("corpus of the DICOMweb searches (the C-FIND corpus; its queries were not measured, -skip-find)")
			r.corpus.print(w)
			p("")
		}
		r.printQido(w)
		r.printMetadata(w)
		r.printRetrieve(w)
	}
}

func (r *report) printStow(w io.Writer) {
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	runs := r.web.stows
	n := o.instances
	p("STOW-RS throughput: the series (%d instances of at most %s, %.1f MB, one study)", n, o.size, float64(r.corpusBytes)/1e6)
	p("sender    one request per run, POST <root>/studies, with all %d instances as the parts of one", n)
	p("          multipart/related; type=\"application/dicom\" body, streamed from the files with its Content-Length;")
	p("          the answer must reference every instance and report none failed, and the peer must then hold all")
	p("rounds    %d: each round stores the series once into every peer, in an order rotated by one each round;", o.rounds)
	p("          every run starts the peer fresh in an empty directory and syncs the machine's dirty pages first")
	p("when each peer answers:")
	for _, pe := range r.webPeers {
		p("  %-13s %s", pe.name, pe.acks)
	}
	p("")
	p("throughput over %d round(s): median, minimum and maximum of instances/s; the other columns are medians", o.rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tinstances/s\tmin\tmax\tMB/s\tpeer CPU ms/instance\t")
	medians := map[string]float64{}
	for _, pe := range r.webPeers {
		var rate, mbps, cpu []float64
		cpuRead := true
		for _, s := range runs {
			if s.peer != pe.name {
				continue
			}
			rate = append(rate, perSecond(n, s.wall))
			mbps = append(mbps, float64(r.corpusBytes)/1e6/s.wall.Seconds())
			cpu = append(cpu, s.peerCPU.Seconds()*1e3/float64(n))
			cpuRead = cpuRead && s.peerRead
		}
		medians[pe.name] = median(rate)
		perInstance := "n/a"
		if cpuRead {
			perInstance = fmt.Sprintf("%.2f", median(cpu))
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", pe.name, median(rate), slices.Min(rate), slices.Max(rate), median(mbps), perInstance)
	}
	tw.Flush()
	for _, pe := range r.webPeers[1:] {
		x := medians[r.webPeers[0].name] / medians[pe.name]
		p("ratio of medians  %s / %s  %5.2f   target ≥ %.1f  %s", r.webPeers[0].name, pe.name, x, targetStowVsOrthanc, verdict(x >= targetStowVsOrthanc))
	}
	p("")
	p("every STOW-RS (order: slot within its round; CPU in seconds)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tslot\tpeer\twall s\tinstances/s\tpeer CPU\t")
	for _, s := range runs {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.3f\t%.1f\t%.2f\t\n", s.round, s.slot, s.peer, s.wall.Seconds(), perSecond(n, s.wall), s.peerCPU.Seconds())
	}
	tw.Flush()
	p("")
}

// rank99 is the rank of the p99 by nearest rank among n samples.
func rank99(n int) int { return int(math.Ceil(float64(n) * 0.99)) }

func (r *report) printQido(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	q := r.web.qido
	p("QIDO-RS latency: study searches on the %d instances (%d studies) of the C-FIND corpus, served by the same", r.corpus.corpus.instances, q.studies)
	p("          loaded peers; %d kinds × %d repetitions = %d per peer after one untimed pass; each is made from a", len(qidoKinds), q.reps, len(qidoKinds)*q.reps)
	p("          random study of the corpus (fixed seed) and sent to every peer, the peers taking turns to go first:")
	for i, k := range qidoKinds {
		p("  %-48s e.g. %s", k.name, q.queryText[i])
	}
	a := 0
	for _, f := range familyNames {
		if strings.HasPrefix(f, "A") {
			a++
		}
	}
	p("          PatientName=A* matches %d of %d studies (%.1f%%): %d of the corpus's %d family names begin with A",
		q.aMatches, q.studies, 100*float64(q.aMatches)/float64(q.studies), a, len(familyNames))
	p("          every answer is checked against the corpus: the studies matched (all, or as many as the limit),")
	p("          Number of Study Related Instances, Modalities in Study, Accession Number, Study Description, Patient's Name")
	p("          Accept: %s; %s", acceptJSON, connections(q.samples, q.peers))
	p("")
	n := len(ms(q.samples, q.peers[0], -1))
	p("times in ms; p99 by nearest rank: per kind rank %d of %d, over all searches rank %d of %d", rank99(q.reps), q.reps, rank99(n), n)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "search\tmatches\t"
	for _, name := range q.peers {
		head += name + " p50\tp99\t"
	}
	for _, name := range q.peers[1:] {
		head += name + "/" + q.peers[0] + " p50\t"
	}
	fmt.Fprintln(tw, head)
	row := func(label, matches string, kind int) {
		line := label + "\t" + matches + "\t"
		for _, name := range q.peers {
			ws := ms(q.samples, name, kind)
			line += fmt.Sprintf("%.2f\t%.2f\t", percentile(ws, 50), percentile(ws, 99))
		}
		base := percentile(ms(q.samples, q.peers[0], kind), 50)
		for _, name := range q.peers[1:] {
			line += fmt.Sprintf("%.1f\t", percentile(ms(q.samples, name, kind), 50)/base)
		}
		fmt.Fprintln(tw, line)
	}
	for kind, k := range qidoKinds {
		var m []float64
		for _, s := range q.samples {
			if s.kind == kind && s.peer == q.peers[0] {
				m = append(m, float64(s.matches))
			}
		}
		row(k.name, fmt.Sprintf("%.0f", median(m)), kind)
	}
	row("all searches", "", -1)
	tw.Flush()
	var cpu []string
	for _, name := range q.peers {
		var total time.Duration
		read, count := true, 0
		for _, s := range q.samples {
			if s.peer == name {
				total += s.peerCPU
				read = read && s.peerRead
				count++
			}
		}
		if read && count > 0 {
			cpu = append(cpu, fmt.Sprintf("%s %.2f ms", name, total.Seconds()*1e3/float64(count)))
		}
	}
	if len(cpu) > 0 {
		p("peer CPU per search, mean of all (from /proc, counted in 10 ms ticks): %s", strings.Join(cpu, ", "))
	}
	p("median answer size on the wire / decompressed, in bytes: %s", sizes(q.samples, q.peers))
	all := percentile(ms(q.samples, q.peers[0], -1), 99)
	aP99 := percentile(ms(q.samples, q.peers[0], 0), 99)
	p("targets")
	p("  %s p99 of all searches    %7.2f ms   target ≤ %d ms  %s", q.peers[0], all, targetQidoP99.Milliseconds(), verdict(all <= float64(targetQidoP99.Milliseconds())))
	p("  %s p99 of PatientName=A*  %7.2f ms   target ≤ %d ms  %s", q.peers[0], aP99, targetQidoP99.Milliseconds(), verdict(aP99 <= float64(targetQidoP99.Milliseconds())))
	p("")
}

// sizes gives each peer's median answer size on the wire and decompressed.
func sizes(samples []webSample, peers []string) string {
	var parts []string
	for _, name := range peers {
		wire := medianOf(samples, name, func(s webSample) float64 { return float64(s.wire) })
		size := medianOf(samples, name, func(s webSample) float64 { return float64(s.size) })
		parts = append(parts, fmt.Sprintf("%s %.0f / %.0f", name, wire, size))
	}
	return strings.Join(parts, ", ")
}

func (r *report) printMetadata(w io.Writer) {
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	m := r.web.metadata
	ws := m.series
	p("WADO-RS series metadata: GET <root>/studies/{study}/series/{series}/metadata of a series of %d instances", len(ws.files))
	p("          (CT, at most %s each, %.1f MB, written by dcmgen), stored into the corpus peers with storescu after", o.size, float64(ws.bytes)/1e6)
	p("          the searches; %d repetitions per peer after one untimed request each, the peers taking turns to go", m.reps)
	p("          first; every answer must describe each instance once. Accept: %s;", acceptJSON)
	p("          %s", connections(m.samples, m.peers))
	p("")
	p("times in ms; p99 by nearest rank, rank %d of %d", rank99(m.reps), m.reps)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tp50\tp99\tmin\tmax\twire bytes\tdecompressed\tpeer CPU ms\t")
	for _, name := range m.peers {
		t := ms(m.samples, name, -1)
		cpu := medianOf(m.samples, name, func(s webSample) float64 { return s.peerCPU.Seconds() * 1e3 })
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t\n", name, percentile(t, 50), percentile(t, 99), t[0], t[len(t)-1],
			medianOf(m.samples, name, func(s webSample) float64 { return float64(s.wire) }),
			medianOf(m.samples, name, func(s webSample) float64 { return float64(s.size) }), cpu)
	}
	tw.Flush()
	for _, name := range m.peers[1:] {
		p("%s/%s p50  %.1f", name, m.peers[0], percentile(ms(m.samples, name, -1), 50)/percentile(ms(m.samples, m.peers[0], -1), 50))
	}
	p99 := percentile(ms(m.samples, m.peers[0], -1), 99)
	p("target    %s p99  %7.1f ms   target ≤ %d ms  %s", m.peers[0], p99, targetMetadataP99.Milliseconds(), verdict(p99 <= float64(targetMetadataP99.Milliseconds())))
	p("")
}

func (r *report) printRetrieve(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	rr := r.web.retrieve
	ws := rr.series
	pacsd := rr.peers[2]
	p("WADO-RS series retrieve: GET <root>/studies/{study}/series/{series} of the series of the C-STORE measurement")
	p("          (%d instances, %.1f MB), stored into the corpus peers with storescu after the searches;", len(ws.files), float64(ws.bytes)/1e6)
	p("          Accept: %s", acceptDICOM)
	p("%-9s the files of pacsd's filesystem store that hold the series' objects (DATA/objects/{study}/{series}/*.dcm),", rawPeer)
	p("          each opened and read to its end, one after the other, by this program")
	p("%-9s %s,", refPeer, retrieveRef)
	p("          each part copied from its file in 1 MiB steps, as pacsd copies from its store: what HTTP over")
	p("          loopback costs on this machine, for reference")
	p("reads     the files and every body are read in reads of %d KiB", readBufferSize>>10)
	p("rounds    %d repetitions of each, taking turns, after one untimed pass that checks every part of every answer", rr.reps)
	p("          (one Part-10 object per instance, pacsd's and net/http's of the size of pacsd's file); every file is")
	p("          in the page cache; %s", connections(rr.samples, rr.peers[1:]))
	p("")
	p("throughput over %d repetitions, of the objects' bytes each sent or read; MB/s median, minimum and maximum", rr.reps)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "source\tMB/s\tmin\tmax\tobjects' bytes\tpeer CPU ms\t")
	rates := map[string]float64{}
	for _, name := range rr.peers {
		var xs []float64
		for _, s := range rr.samples {
			if s.peer == name {
				xs = append(xs, float64(rr.bytes[name])/1e6/s.wall.Seconds())
			}
		}
		rates[name] = median(xs)
		cpu := "n/a"
		if name != rawPeer && name != refPeer {
			cpu = fmt.Sprintf("%.0f", medianOf(rr.samples, name, func(s webSample) float64 { return s.peerCPU.Seconds() * 1e3 }))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\t%d\t%s\t\n", name, median(xs), slices.Min(xs), slices.Max(xs), rr.bytes[name], cpu)
	}
	tw.Flush()
	p("ratios of medians")
	for _, name := range slices.Concat(rr.peers[1:2], rr.peers[3:]) {
		p("  %s / %-13s %5.2f", pacsd, name, rates[pacsd]/rates[name])
	}
	x := rates[pacsd] / rates[rawPeer]
	p("  %s / %-13s %5.2f   target ≥ %.1f  %s", pacsd, rawPeer, x, targetWadoVsRaw, verdict(x >= targetWadoVsRaw))
	p("")
}
