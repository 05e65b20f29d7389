package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
)

// The C-FIND measurement. One corpus of small instances (a few hundred
// bytes of pixel data each: the index, not the disk, is what a query
// costs) is loaded into one pacsd and one Orthanc, and then the same
// sequence of STUDY-level queries is sent to both, alternating between
// them, each timed from the request to the final response.

// studySize is the number of instances of every study of the corpus, in
// two series.
const studySize = 50

// The SOP classes of the corpus, by the modality of their series.
var findClasses = map[string]string{
	"CT": dcmgen.CTImageStorage,
	"MR": "1.2.840.10008.5.1.4.1.1.4",   // MR Image Storage
	"PT": "1.2.840.10008.5.1.4.1.1.128", // Positron Emission Tomography Image Storage
}

// studyKinds are the kinds of study of the corpus: a description and the
// modalities of its two series.
var studyKinds = []struct {
	description string
	modalities  [2]string
}{
	{"CT Chest", [2]string{"CT", "CT"}},
	{"CT Abdomen", [2]string{"CT", "CT"}},
	{"MR Brain", [2]string{"MR", "MR"}},
	{"MR Knee", [2]string{"MR", "MR"}},
	{"PET/CT Whole Body", [2]string{"PT", "CT"}},
}

// Patient names are drawn from these, so that a prefix such as "Mar*"
// matches several family names, as it does in a real archive.
var (
	familyNames = strings.Fields(`Adams Allen Alvarez Anderson Bailey Baker Barnes Bell Bennett Brooks
		Brown Butler Campbell Carter Castillo Chavez Clark Collins Cook Cooper Cox Cruz Davies Davis Diaz
		Edwards Evans Fischer Fisher Flores Foster Garcia Gomez Gonzalez Gray Green Hall Harris Hernandez
		Hill Hoffmann Howard Hughes Jackson James Jenkins Johnson Jones Kelly Kim King Klein Lee Lewis Long
		Lopez Martin Martinez Marshall Mason Meyer Miller Mitchell Moore Morales Morgan Morris Murphy Myers
		Nelson Nguyen Ortiz Parker Patel Perez Perry Peterson Phillips Powell Price Ramirez Reed Reyes
		Richardson Rivera Roberts Robinson Rodriguez Rogers Ross Russell Sanchez Sanders Schmidt Schneider
		Scott Smith Stewart Sullivan Taylor Thomas Thompson Torres Turner Walker Ward Watson Weber White
		Williams Wilson Wood Wright Young`)
	givenNames = strings.Fields(`Aaron Ada Alice Amir Anna Ben Carla Chen David Elena Emma Farah Felix
		Grace Hana Hugo Ines Ivan Jack Julia Karim Laura Leo Lina Marco Maria Mei Nina Noah Olga Omar Paul
		Rosa Sam Sara Tariq Tom Ute Vera Yusuf`)
)

// findStudy is one study of the corpus, with what the queries match on.
type findStudy struct {
	uid, patientID, patientName, date, accession, description string
	modalities                                                []string // distinct, sorted
}

// findCorpus is the corpus of the C-FIND measurement, written into one
// directory per loading association.
type findCorpus struct {
	studies   []*findStudy
	patients  int
	instances int
	bytes     int64
	shards    []string
	first     string // the first day of the year the study dates cover
}

// writeFindCorpus writes studies of studySize instances, as many as make
// at most n instances, into shards directories under dir. The values are
// drawn from a generator with a fixed seed, so every run has the same
// patients, dates and accession numbers; only the UIDs are new.
func writeFindCorpus(ctx context.Context, dir string, n, shards int) (*findCorpus, error) {
	c := &findCorpus{first: "20240101"}
	nstudies := n / studySize
	if nstudies < 1 {
		return nil, fmt.Errorf("-find-instances %d: at least one study of %d instances is needed", n, studySize)
	}
	c.patients = max(1, nstudies/2)
	c.instances = nstudies * studySize
	rng := rand.New(rand.NewPCG(1, 2))
	patients := make([]dcmgen.Patient, c.patients)
	for i := range patients {
		sex := "F"
		if rng.IntN(2) == 0 {
			sex = "M"
		}
		patients[i] = dcmgen.Patient{
			Name:      familyNames[rng.IntN(len(familyNames))] + "^" + givenNames[rng.IntN(len(givenNames))],
			ID:        fmt.Sprintf("PAT%06d", i+1),
			BirthDate: day("19300101", rng.IntN(80*365)),
			Sex:       sex,
		}
	}
	type plan struct {
		study   dcmgen.Study
		patient dcmgen.Patient
		series  [2]dcmgen.Series
	}
	plans := make([]plan, nstudies)
	for i := range plans {
		kind := studyKinds[rng.IntN(len(studyKinds))]
		p := patients[rng.IntN(len(patients))]
		st := dcmgen.Study{
			UID:                    dcmgen.UID(),
			Date:                   day(c.first, rng.IntN(366)),
			Time:                   fmt.Sprintf("%02d%02d%02d", 7+rng.IntN(13), rng.IntN(60), rng.IntN(60)),
			AccessionNumber:        fmt.Sprintf("ACC%07d", i+1),
			StudyID:                strconv.Itoa(i + 1),
			Description:            kind.description,
			ReferringPhysicianName: familyNames[rng.IntN(len(familyNames))] + "^" + givenNames[rng.IntN(len(givenNames))],
		}
		pl := plan{study: st, patient: p}
		fs := &findStudy{uid: st.UID, patientID: p.ID, patientName: p.Name, date: st.Date, accession: st.AccessionNumber,
			description: st.Description}
		for j, m := range kind.modalities {
			pl.series[j] = dcmgen.Series{UID: dcmgen.UID(), Modality: m, Number: j + 1,
				Description: kind.description + " " + m, FrameOfReferenceUID: dcmgen.UID()}
			if !slices.Contains(fs.modalities, m) {
				fs.modalities = append(fs.modalities, m)
			}
		}
		slices.Sort(fs.modalities)
		plans[i] = pl
		c.studies = append(c.studies, fs)
	}

	// One writer per shard; the studies are dealt out to the shards in
	// turn, so every loading association gets the same share.
	var wg sync.WaitGroup
	errs := make([]error, shards)
	sizes := make([]int64, shards)
	for s := range shards {
		c.shards = append(c.shards, filepath.Join(dir, fmt.Sprintf("shard-%d", s+1)))
		if err := os.MkdirAll(c.shards[s], 0o755); err != nil {
			return nil, err
		}
		wg.Go(func() {
			for i := s; i < len(plans); i += shards {
				if errs[s] = ctx.Err(); errs[s] != nil {
					return
				}
				pl := plans[i]
				for j := range studySize {
					se := pl.series[j*2/studySize]
					in := dcmgen.Instance{
						Patient:        pl.patient,
						Study:          pl.study,
						Series:         se,
						SOPClassUID:    findClasses[se.Modality],
						InstanceNumber: j%(studySize/2) + 1,
						Rows:           8,
						Columns:        8,
					}
					f, err := dcmgen.Create(filepath.Join(c.shards[s], fmt.Sprintf("%06d-%02d.dcm", i+1, j+1)), &in)
					if err != nil {
						errs[s] = err
						return
					}
					sizes[s] += f.Size
				}
			}
		})
	}
	wg.Wait()
	for _, n := range sizes {
		c.bytes += n
	}
	return c, errors.Join(errs...)
}

// day returns the date n days after first, both YYYYMMDD.
func day(first string, n int) string {
	t, err := time.Parse("20060102", first)
	if err != nil {
		panic(err) // first is a constant of this file
	}
	return t.AddDate(0, 0, n).Format("20060102")
}

// loadResult is what loading the corpus into one peer cost.
type loadResult struct {
	wall     time.Duration
	peerCPU  time.Duration
	peerRead bool
}

// loadFind sends the corpus to s with one storescu per shard, all at
// once, and checks that s then holds every instance.
func loadFind(ctx context.Context, s *server, name string, c *findCorpus) (loadResult, error) {
	syscall.Sync()
	cpu0, err0 := procCPU(s.pid)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(c.shards))
	for i, dir := range c.shards {
		wg.Go(func() { _, errs[i] = send(ctx, s, true, dir) })
	}
	wg.Wait()
	res := loadResult{wall: time.Since(start)}
	cpu1, err1 := procCPU(s.pid)
	res.peerCPU, res.peerRead = cpu1-cpu0, err0 == nil && err1 == nil
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	got, err := s.stored(ctx)
	if err != nil {
		return res, fmt.Errorf("counting stored instances: %w", err)
	}
	if got != c.instances {
		return res, fmt.Errorf("%s holds %d of %d instances after loading; see %s", name, got, c.instances, s.log)
	}
	return res, nil
}

// findKinds are the queries of the mix, each made from one study of the
// corpus, which it therefore matches.
var findKinds = []struct {
	name string
	key  func(st *findStudy) (tag.Tag, string)
	// match reports whether a study of the corpus matches the key.
	match func(st *findStudy, value string) bool
}{
	{"PatientID", func(st *findStudy) (tag.Tag, string) { return tag.PatientID, st.patientID },
		func(st *findStudy, v string) bool { return st.patientID == v }},
	{"PatientName=prefix*", func(st *findStudy) (tag.Tag, string) {
		family, _, _ := strings.Cut(st.patientName, "^")
		return tag.PatientName, family[:min(3, len(family))] + "*"
	}, func(st *findStudy, v string) bool {
		return strings.HasPrefix(strings.ToUpper(st.patientName), strings.ToUpper(strings.TrimSuffix(v, "*")))
	}},
	{"StudyDate range (7 days)", func(st *findStudy) (tag.Tag, string) { return tag.StudyDate, st.date + "-" + day(st.date, 6) },
		func(st *findStudy, v string) bool {
			lo, hi, _ := strings.Cut(v, "-")
			return st.date >= lo && st.date <= hi
		}},
	{"AccessionNumber", func(st *findStudy) (tag.Tag, string) { return tag.AccessionNumber, st.accession },
		func(st *findStudy, v string) bool { return st.accession == v }},
	{"StudyInstanceUID", func(st *findStudy) (tag.Tag, string) { return tag.StudyInstanceUID, st.uid },
		func(st *findStudy, v string) bool { return st.uid == v }},
	{"StudyDate (one day)", func(st *findStudy) (tag.Tag, string) { return tag.StudyDate, st.date },
		func(st *findStudy, v string) bool { return st.date == v }},
}

// findReturnKeys are asked for in every query, as a study list of a
// viewer asks for them; the key a query matches on gets its value.
var findReturnKeys = []tag.Tag{
	tag.PatientName, tag.PatientID, tag.PatientBirthDate, tag.PatientSex,
	tag.StudyInstanceUID, tag.StudyDate, tag.StudyTime, tag.AccessionNumber, tag.StudyID,
	tag.StudyDescription, tag.ReferringPhysicianName, tag.ModalitiesInStudy,
	tag.NumberOfStudyRelatedSeries, tag.NumberOfStudyRelatedInstances,
}

// findQuery is one query of the sequence, with the studies it must find.
type findQuery struct {
	kind  int
	value string // of the key it matches on
	ident *dicom.Dataset
	want  map[string]*findStudy // by Study Instance UID
}

func newFindQuery(c *findCorpus, kind int, st *findStudy) findQuery {
	k := findKinds[kind]
	key, value := k.key(st)
	ds := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"STUDY"}}}}
	for _, t := range findReturnKeys {
		info, _ := tag.Lookup(t)
		e := dicom.Element{Tag: t, VR: info.VR}
		if t == key {
			e.Values = []string{value}
		}
		ds.Elements = append(ds.Elements, e)
	}
	slices.SortFunc(ds.Elements, func(a, b dicom.Element) int { return int(int64(a.Tag) - int64(b.Tag)) })
	q := findQuery{kind: kind, value: value, ident: ds, want: map[string]*findStudy{}}
	for _, s := range c.studies {
		if k.match(s, value) {
			q.want[s.uid] = s
		}
	}
	return q
}

// check compares the matches a peer sent with the studies the query must
// find, and the computed return keys with the corpus: a peer that answers
// less than it was asked does less work.
func (q findQuery) check(matches []*dicom.Dataset) error {
	k, value := findKinds[q.kind], q.value
	seen := map[string]bool{}
	for _, m := range matches {
		u := m.First(tag.StudyInstanceUID)
		st, ok := q.want[u]
		if !ok {
			return fmt.Errorf("query %s=%s: study %q does not match", k.name, value, u)
		}
		if seen[u] {
			return fmt.Errorf("query %s=%s: study %s answered twice", k.name, value, u)
		}
		seen[u] = true
		if got := m.First(tag.NumberOfStudyRelatedInstances); got != strconv.Itoa(studySize) {
			return fmt.Errorf("query %s=%s: study %s has NumberOfStudyRelatedInstances %q, want %d", k.name, value, u, got, studySize)
		}
		mods := slices.Clone(m.Strings(tag.ModalitiesInStudy))
		slices.Sort(mods)
		if !slices.Equal(mods, st.modalities) {
			return fmt.Errorf("query %s=%s: study %s has ModalitiesInStudy %q, want %q", k.name, value, u, mods, st.modalities)
		}
		if got := m.First(tag.AccessionNumber); got != st.accession {
			return fmt.Errorf("query %s=%s: study %s has AccessionNumber %q, want %q", k.name, value, u, got, st.accession)
		}
	}
	if len(seen) != len(q.want) {
		return fmt.Errorf("query %s=%s: %d matches, want %d", k.name, value, len(seen), len(q.want))
	}
	return nil
}

// findSample is one timed query, or one C-ECHO when kind is -1.
type findSample struct {
	peer    string
	kind    int
	wall    time.Duration
	matches int
}

// findResult is the whole C-FIND measurement.
type findResult struct {
	*corpusLoad
	samples []findSample
	reps    int
	peerCPU map[string]time.Duration // over all timed queries
	cpuRead map[string]bool
}

// corpusLoad is the corpus and what loading it into each peer cost.
type corpusLoad struct {
	corpus *findCorpus
	peers  []string // in the order they were loaded
	loads  map[string]loadResult
	// orthancWeb says that the Orthanc of the corpus loaded the DICOMweb
	// plugin, to serve the DICOMweb searches too.
	orthancWeb bool
}

// corpusPeers are the peers loaded with the corpus, left running so that
// the C-FIND and the DICOMweb measurements read from the same ones rather
// than loading 100,000 instances twice.
type corpusPeers struct {
	*corpusLoad
	dir     string
	servers []*server // in the order of peers
}

// loadCorpus writes the corpus, starts every peer fresh in its own
// directory under tmp and loads the corpus into it. The caller stops the
// peers with stop; on error loadCorpus stops what it started.
func loadCorpus(ctx context.Context, o options, peers []peer, tmp string, orthancWeb bool, logf func(string, ...any)) (_ *corpusPeers, err error) {
	cp := &corpusPeers{dir: filepath.Join(tmp, "find")}
	defer func() {
		if err != nil {
			cp.stop(ctx)
		}
	}()
	logf("corpus: writing %d instances in studies of %d", o.findInstances, studySize)
	t := time.Now()
	c, err := writeFindCorpus(ctx, filepath.Join(cp.dir, "corpus"), o.findInstances, o.findLoaders)
	if err != nil {
		return nil, err
	}
	logf("corpus: written in %.1f s", time.Since(t).Seconds())
	cp.corpusLoad = &corpusLoad{corpus: c, loads: map[string]loadResult{}, orthancWeb: orthancWeb}
	for _, p := range peers {
		pdir := filepath.Join(cp.dir, p.name)
		if err := os.Mkdir(pdir, 0o755); err != nil {
			return nil, err
		}
		s, err := p.start(ctx, pdir)
		if err != nil {
			return nil, err
		}
		cp.servers = append(cp.servers, s)
		cp.peers = append(cp.peers, p.name)
		logf("corpus: loading %d instances into %s with %d storescu associations in parallel", c.instances, p.name, len(c.shards))
		l, err := loadFind(ctx, s, p.name, c)
		if err != nil {
			return nil, fmt.Errorf("corpus, %s: %w", p.name, err)
		}
		logf("corpus: %s loaded in %.1f s, %.1f instances/s", p.name, l.wall.Seconds(), perSecond(c.instances, l.wall))
		cp.loads[p.name] = l
	}
	// The corpus files are no longer needed, and 100,000 of them take a
	// while to remove; better now than after the report.
	if err := os.RemoveAll(filepath.Join(cp.dir, "corpus")); err != nil {
		return nil, err
	}
	return cp, nil
}

// stop stops the peers and removes their directory. A peer that died
// during the measurements is news, unless the run was interrupted.
func (cp *corpusPeers) stop(ctx context.Context) error {
	var errs []error
	for _, s := range cp.servers {
		if err := s.stop(); err != nil && ctx.Err() == nil {
			errs = append(errs, err)
		}
	}
	cp.servers = nil
	errs = append(errs, os.RemoveAll(cp.dir))
	return errors.Join(errs...)
}

// findPeer is a loaded peer with its association.
type findPeer struct {
	name string
	s    *server
	a    *dimse.Association
}

// measureFind sends every peer of cp the same sequence of queries over
// one association each.
func measureFind(ctx context.Context, o options, cp *corpusPeers, logf func(string, ...any)) (_ *findResult, err error) {
	c := cp.corpus
	res := &findResult{corpusLoad: cp.corpusLoad, reps: o.findReps,
		peerCPU: map[string]time.Duration{}, cpuRead: map[string]bool{}}
	var fps []*findPeer
	defer func() {
		for _, fp := range fps {
			fp.a.Release(context.WithoutCancel(ctx))
		}
	}()
	for i, s := range cp.servers {
		name := cp.peers[i]
		res.cpuRead[name] = true
		d := &dimse.Dialer{CallingAE: "BENCH", CalledAE: s.aet, Proposals: []dimse.Proposal{
			{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelFind, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}},
			{AbstractSyntax: uid.Verification, TransferSyntaxes: []string{uid.ImplicitVRLittleEndian}},
		}}
		a, err := d.Dial(ctx, s.addr())
		if err != nil {
			return nil, fmt.Errorf("C-FIND, %s: %w", name, err)
		}
		fps = append(fps, &findPeer{name: name, s: s, a: a})
	}

	// The same queries for every peer: repetition 0 warms the peers up
	// and checks every answer without being timed.
	rng := rand.New(rand.NewPCG(3, 4))
	began := time.Now()
	for rep := range o.findReps + 1 {
		switch {
		case rep == 1:
			logf("C-FIND: %d repetitions of %d queries per peer", o.findReps, len(findKinds))
		case rep > 1 && (rep-1)%10 == 0:
			logf("C-FIND: %d repetitions done in %.1f s", rep-1, time.Since(began).Seconds())
		}
		for kind := range findKinds {
			q := newFindQuery(c, kind, c.studies[rng.IntN(len(c.studies))])
			for i := range fps {
				// Who goes first alternates from query to query.
				fp := fps[(i+rep+kind)%len(fps)]
				cpu0, err0 := procCPU(fp.s.pid)
				start := time.Now()
				var matches []*dicom.Dataset
				for m, err := range fp.a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, q.ident) {
					if err != nil {
						return nil, fmt.Errorf("C-FIND, %s: %w", fp.name, err)
					}
					matches = append(matches, m)
				}
				wall := time.Since(start)
				cpu1, err1 := procCPU(fp.s.pid)
				if err := q.check(matches); err != nil {
					return nil, fmt.Errorf("C-FIND, %s: %w", fp.name, err)
				}
				if rep == 0 {
					continue
				}
				res.samples = append(res.samples, findSample{peer: fp.name, kind: kind, wall: wall, matches: len(matches)})
				res.peerCPU[fp.name] += cpu1 - cpu0
				if err0 != nil || err1 != nil {
					res.cpuRead[fp.name] = false
				}
			}
		}
		for i := range fps {
			fp := fps[(i+rep)%len(fps)]
			start := time.Now()
			if err := fp.a.Echo(ctx); err != nil {
				return nil, fmt.Errorf("C-ECHO, %s: %w", fp.name, err)
			}
			if rep > 0 {
				res.samples = append(res.samples, findSample{peer: fp.name, kind: -1, wall: time.Since(start)})
			}
		}
	}
	return res, nil
}

// walls returns the times of the samples of peer and kind (any kind but
// C-ECHO when kind is -2), in milliseconds, sorted.
func (r *findResult) walls(peer string, kind int) []float64 {
	var out []float64
	for _, s := range r.samples {
		if s.peer == peer && (s.kind == kind || kind == -2 && s.kind >= 0) {
			out = append(out, float64(s.wall)/float64(time.Millisecond))
		}
	}
	slices.Sort(out)
	return out
}

// matches returns the median number of matches of the queries of kind.
func (r *findResult) matches(kind int) float64 {
	var n []float64
	for _, s := range r.samples {
		if s.kind == kind && s.peer == r.peers[0] {
			n = append(n, float64(s.matches))
		}
	}
	return median(n)
}

// percentile returns the p-th percentile of sorted xs by the nearest-rank
// method: the smallest value that at least p percent of xs do not exceed.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// printFind prints the C-FIND measurement.
func (r *report) printFind(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	f := r.find
	if f == nil {
		p("C-FIND: not measured (-skip-find)")
		p("")
		return
	}
	p("C-FIND latency, STUDY level, Study Root")
	f.corpusLoad.print(w)
	p("queries   %d kinds × %d repetitions = %d per peer, after one untimed pass of every kind; each query is made from", len(findKinds), f.reps, len(findKinds)*f.reps)
	p("          a random study of the corpus (fixed seed), sent to every peer, the peers taking turns to go first;")
	p("          return keys %s", tagNames(findReturnKeys[:6]))
	p("          %s", tagNames(findReturnKeys[6:11]))
	p("          %s;", tagNames(findReturnKeys[11:]))
	p("          every answer is checked against the corpus (the studies matched, Number of Study Related Instances,")
	p("          Modalities in Study, Accession Number)")
	p("timing    pacsd's own SCU (dimse.Association.Find, not findscu: no process start is timed), one association per")
	p("          peer for the whole measurement; from sending the request to the final response, every match parsed")
	var echo []string
	for _, name := range f.peers {
		echo = append(echo, fmt.Sprintf("%s p50 %.2f ms", name, percentile(f.walls(name, -1), 50)))
	}
	p("C-ECHO    round trip on the same associations, as the floor: %s", strings.Join(echo, ", "))
	p("")

	rank := func(n int) int { return int(math.Ceil(float64(n) * 0.99)) }
	n := len(f.walls(f.peers[0], -2))
	p("query times in ms over %d repetitions; p99 by nearest rank: per kind the time of rank %d of %d in ascending", f.reps, rank(f.reps), f.reps)
	p("order, over all queries rank %d of %d", rank(n), n)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "kind\tmatches\t"
	for _, name := range f.peers {
		head += name + " p50\tp99\t"
	}
	for _, name := range f.peers[1:] {
		head += name + "/" + f.peers[0] + " p50\t"
	}
	fmt.Fprintln(tw, head)
	row := func(label, matches string, kind int) {
		line := label + "\t" + matches + "\t"
		for _, name := range f.peers {
			ws := f.walls(name, kind)
			line += fmt.Sprintf("%.2f\t%.2f\t", percentile(ws, 50), percentile(ws, 99))
		}
		base := percentile(f.walls(f.peers[0], kind), 50)
		for _, name := range f.peers[1:] {
			line += fmt.Sprintf("%.1f\t", percentile(f.walls(name, kind), 50)/base)
		}
		fmt.Fprintln(tw, line)
	}
	for kind, k := range findKinds {
		row(k.name, fmt.Sprintf("%.0f", f.matches(kind)), kind)
	}
	row("all queries", "", -2)
	tw.Flush()
	var cpu []string
	for _, name := range f.peers {
		if f.cpuRead[name] {
			cpu = append(cpu, fmt.Sprintf("%s %.2f ms", name, f.peerCPU[name].Seconds()*1e3/float64(len(f.walls(name, -2)))))
		}
	}
	if len(cpu) > 0 {
		p("peer CPU per query, mean of all (from /proc, counted in 10 ms ticks): %s", strings.Join(cpu, ", "))
	}

	p("")
	p("targets")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "not met"
	}
	all := f.walls(f.peers[0], -2)
	p99 := percentile(all, 99)
	p("  %s p99 of all queries  %7.2f ms   target ≤ %d ms  %s", f.peers[0], p99, targetFindP99.Milliseconds(), verdict(p99 <= float64(targetFindP99.Milliseconds())))
	for _, name := range f.peers[1:] {
		other := f.walls(name, -2)
		for _, pc := range []float64{50, 99} {
			x := percentile(other, pc) / percentile(all, pc)
			p("  %s / %s, p%.0f of all queries  %5.1f   target ≥ %.1f  %s", name, f.peers[0], pc, x, targetFindVsOrthanc, verdict(x >= targetFindVsOrthanc))
		}
	}
	p("")
}

// print describes the corpus and its loading.
func (l *corpusLoad) print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	c := l.corpus
	p("index     %d instances: %d studies of %d instances in two series (CT, MR or PET/CT), %d patients,",
		c.instances, len(c.studies), studySize, c.patients)
	p("          study dates over the year from %s, one accession number per study; images of 8×8 pixels,", c.first)
	p("          %.1f MB in all, written by dcmgen", float64(c.bytes)/1e6)
	p("loading   %d storescu associations in parallel (storescu %s -aec <peer AE> +sd <shard>),", len(c.shards), strings.Join(storescuArgs, " "))
	p("          each with 1/%d of the studies; wall time from the first start to the last exit:", len(c.shards))
	for _, name := range l.peers {
		ld := l.loads[name]
		cpu := "n/a"
		if ld.peerRead {
			cpu = fmt.Sprintf("%.1f s", ld.peerCPU.Seconds())
		}
		p("  %-13s %7.1f s  %7.1f instances/s  peer CPU %s", name, ld.wall.Seconds(), perSecond(c.instances, ld.wall), cpu)
	}
	if l.orthancWeb {
		p("          Orthanc runs with its DICOMweb plugin loaded, so that the same loaded peers serve the DICOMweb")
		p("          searches too")
	}
}

// tagNames returns the keywords of ts, space-separated.
func tagNames(ts []tag.Tag) string {
	var names []string
	for _, t := range ts {
		info, _ := tag.Lookup(t)
		names = append(names, info.Keyword)
	}
	return strings.Join(names, " ")
}
