package migrate

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// ImportSource is the name imports are recorded under in the State.
const ImportSource = "import"

// Importer takes instances in from files: `pacsd import`. It reads
// Part-10 files and bare data sets (Implicit or Explicit VR Little
// Endian, told apart by their first element), in directories
// recursively. A DICOMDIR is read for the files it lists, and a file it
// lists that is missing is reported; it is not itself an instance.
//
// Each file is stored, then its data set read back from pacsd and
// compared by SHA-256 with the file's. A file already verified by an
// earlier import, unchanged since (same size and modification time), is
// not read again, so an import that stopped goes on where it was.
// Files that are not DICOM, or not whole, are recorded with the reason
// and never stop the import.
type Importer struct {
	State   State
	Archive Archive
	Index   Index
	// AETitle is pacsd's, recorded as the AE the instances were sent to.
	AETitle string
	// Concurrency is how many files are read at once (default 4).
	Concurrency int
	// Owner and Alive are as for Config.
	Owner    string
	Alive    func(owner string) bool
	Progress *Progress
	Logger   *slog.Logger
}

// ImportSummary is what an import did.
type ImportSummary struct {
	Migration *Migration
	// Files counts the files by what became of them in this import;
	// Skipped those verified by an earlier one.
	Files   map[FileState]int
	Skipped int
	// ByState counts the studies of the files read, by state.
	ByState map[StudyState]int
	Stopped bool
}

// Complete reports whether every study the import read is verified.
func (s *ImportSummary) Complete() bool {
	for st, n := range s.ByState {
		if st != Verified && n > 0 {
			return false
		}
	}
	return true
}

// Run imports the files and directories at paths.
func (im *Importer) Run(ctx context.Context, paths []string) (*ImportSummary, error) {
	log := im.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mig, err := im.State.Begin(ctx, ImportSource, KindImport)
	if err != nil {
		return nil, err
	}
	m := &Migrator{cfg: Config{State: im.State, Owner: im.Owner, Alive: im.Alive}, log: log, mig: mig}
	if err := m.claim(ctx, mig); err != nil {
		return nil, err
	}
	if err := m.update(ctx, func(g *Migration) { g.Running, g.Finished, g.Waiting = true, false, false }); err != nil {
		return nil, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := m.update(rctx, func(g *Migration) { g.Running = false }); err != nil {
			log.Warn("import state not updated", "err", err)
		}
		if err := im.State.Claim(rctx, mig.ID, im.Owner, "", time.Now()); err != nil {
			log.Warn("import not released", "err", err)
		}
	}()
	stopBeat := m.beat()
	defer stopBeat()

	sum := &ImportSummary{Migration: mig, Files: map[FileState]int{}, ByState: map[StudyState]int{}}
	k := &keeper{archive: im.Archive, index: im.Index, aeTitle: im.AETitle, source: SourceImport, received: func(n int64) { m.stats.bytes.Add(n) }}
	if im.Progress != nil {
		im.Progress.start(&m.stats)
		defer im.Progress.stop()
	}
	run := &importRun{im: im, mig: mig, keep: k, log: log, stats: &m.stats, studies: map[string]*importStudy{}}
	files := make(chan string)
	var wg sync.WaitGroup
	work := context.WithoutCancel(ctx) // a file being read is finished after a stop
	for range max(im.Concurrency, 1) {
		wg.Go(func() {
			for path := range files {
				run.file(work, path, sum)
			}
		})
	}
	walkErr := run.walk(ctx, paths, files)
	close(files)
	wg.Wait()
	sum.Stopped = ctx.Err() != nil
	if walkErr != nil && !sum.Stopped {
		return nil, walkErr
	}
	if err := run.recount(context.WithoutCancel(ctx), sum); err != nil {
		return nil, err
	}
	if !sum.Stopped {
		if err := m.update(context.WithoutCancel(ctx), func(g *Migration) { g.Finished = true }); err != nil {
			return nil, err
		}
	}
	sum.Migration = m.migration()
	return sum, nil
}

// importRun is one import in progress.
type importRun struct {
	im    *Importer
	mig   *Migration
	keep  *keeper
	log   *slog.Logger
	stats *stats

	mu      sync.Mutex
	studies map[string]*importStudy // the studies of the files read, by UID
}

// importStudy is what the files read tell of a study.
type importStudy struct {
	row      Study
	patients []*patient
}

// walk sends the files under paths to files, in order, until ctx ends.
func (r *importRun) walk(ctx context.Context, paths []string, files chan<- string) error {
	send := func(p string) error {
		r.stats.total.Add(1)
		select {
		case files <- p:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, root := range paths {
		abs, err := filepath.Abs(root)
		if err != nil {
			return err
		}
		err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				r.reject(ctx, p, nil, fmt.Sprintf("cannot be read: %v", err))
				if d != nil && d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			if strings.EqualFold(d.Name(), "DICOMDIR") {
				r.dicomdir(ctx, p)
				return nil
			}
			return send(p)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// dicomdir checks that the files a DICOMDIR lists exist; its instances
// are read with the rest of the directory.
func (r *importRun) dicomdir(ctx context.Context, path string) {
	refs, err := readDICOMDIR(path)
	if err != nil {
		r.reject(ctx, path, nil, fmt.Sprintf("a DICOMDIR that cannot be read: %v", err))
		return
	}
	dir := filepath.Dir(path)
	missing := 0
	for _, ref := range refs {
		if !fileIDWithin(ref) {
			// A File ID names a file under the DICOMDIR's directory
			// (PS3.10 8.2); one that would leave it is not looked for.
			missing++
			r.reject(ctx, path, nil, fmt.Sprintf("lists %q, which is no file ID under its directory", ref))
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(ref))
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if _, err := os.Stat(strings.ToLower(p)); err == nil {
			continue
		}
		missing++
		r.reject(ctx, p, nil, "listed in "+path+" but missing")
	}
	r.log.Info("import: DICOMDIR read", "path", path, "files", len(refs), "missing", missing)
}

// fileIDWithin reports whether a Referenced File ID, its components
// joined with slashes, names a file under the DICOMDIR's directory: no
// component empty, "." or "..", none holding a separator of its own.
func fileIDWithin(ref string) bool {
	for c := range strings.SplitSeq(ref, "/") {
		if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "\\:\x00") {
			return false
		}
	}
	return true
}

// readDICOMDIR returns the Referenced File IDs of a DICOMDIR, as paths
// with slashes relative to its directory.
func readDICOMDIR(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	fm, _, err := dicom.ReadFileMeta(br)
	if err != nil {
		return nil, err
	}
	ts, ok := uid.LookupTransferSyntax(fm.TransferSyntaxUID)
	if !ok {
		return nil, fmt.Errorf("transfer syntax %q", fm.TransferSyntaxUID)
	}
	sc := dicom.NewScanner(br, ts, dicom.Limits{Header: 256 << 20, Identify: 256 << 20})
	defer sc.Close()
	if _, err := sc.Identify(); err != nil && !errors.Is(err, dicom.ErrTooLarge) {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, sc.Rest()); err != nil {
		return nil, err
	}
	h := sc.Header()
	if h.Err != nil {
		return nil, h.Err
	}
	var out []string
	for _, item := range h.Dataset.Items(tag.DirectoryRecordSequence) {
		if ids := item.Strings(tag.ReferencedFileID); len(ids) > 0 {
			out = append(out, strings.Join(ids, "/"))
		}
	}
	return out, nil
}

func (r *importRun) reject(ctx context.Context, path string, fi fs.FileInfo, reason string) {
	f := &File{Path: path, State: FileRejected, Reason: reason}
	if fi != nil {
		f.Size, f.ModTime = fi.Size(), fi.ModTime()
	}
	r.put(ctx, f)
}

func (r *importRun) put(ctx context.Context, f *File) {
	if err := r.im.State.PutFile(ctx, r.mig.ID, f); err != nil {
		r.log.Error("import: file not recorded", "path", f.Path, "err", err)
	}
}

// file imports one file.
func (r *importRun) file(ctx context.Context, path string, sum *ImportSummary) {
	defer r.stats.finished.Add(1)
	fi, err := os.Stat(path)
	if err != nil {
		r.reject(ctx, path, nil, fmt.Sprintf("cannot be read: %v", err))
		r.count(sum, FileRejected)
		return
	}
	// A State keeps times to the microsecond.
	mod := fi.ModTime().UTC().Truncate(time.Microsecond)
	if prev, err := r.im.State.File(ctx, r.mig.ID, path); err == nil && prev.State == FileVerified &&
		prev.Size == fi.Size() && prev.ModTime.Equal(mod) {
		r.mu.Lock()
		sum.Skipped++
		r.mu.Unlock()
		return
	}
	rec := &File{Path: path, Size: fi.Size(), ModTime: mod}
	k, err := r.read(ctx, path, rec)
	switch {
	case err == nil:
		rec.State, rec.SHA256 = FileVerified, k.sha256
		r.stats.instances.Add(1)
		r.note(k, rec)
	case errors.Is(err, ErrConflict):
		rec.State, rec.Reason = FileConflict, err.Error()
	case errors.Is(err, errNotDICOM), errors.Is(err, ErrRefused),
		errors.Is(err, dicom.ErrMalformed), errors.Is(err, dicom.ErrNotPart10), errors.Is(err, dicom.ErrTooLarge):
		rec.State, rec.Reason = FileRejected, err.Error()
	default:
		rec.State, rec.Reason = FileFailed, err.Error()
	}
	if rec.State != FileVerified {
		r.stats.errors.Add(1)
		r.log.Warn("import: file not taken in", "path", path, "state", rec.State, "reason", rec.Reason)
	}
	r.put(ctx, rec)
	r.count(sum, rec.State)
}

func (r *importRun) count(sum *ImportSummary, s FileState) {
	r.mu.Lock()
	sum.Files[s]++
	r.mu.Unlock()
}

// errNotDICOM reports a file that is neither Part-10 nor a bare data set.
var errNotDICOM = errors.New("not DICOM")

// read stores the instance in the file at path, noting its UIDs in rec.
func (r *importRun) read(ctx context.Context, path string, rec *File) (*kept, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	in, err := openInstance(br)
	if err != nil {
		return nil, err
	}
	rec.SOPInstanceUID = in.SOPInstanceUID
	if in.SOPInstanceUID == "" {
		// A bare data set declares nothing: its UIDs are read first, so
		// that a copy already in pacsd is compared, not refused.
		if in.SOPInstanceUID, in.SOPClassUID, err = identify(br, in.TransferSyntaxUID); err != nil {
			return nil, err
		}
		rec.SOPInstanceUID = in.SOPInstanceUID
	}
	if in.SOPClassUID == uid.MediaStorageDirectoryStorage {
		return nil, fmt.Errorf("%w: a DICOMDIR not named DICOMDIR", errNotDICOM)
	}
	k, err := r.keep.keep(ctx, in)
	if k != nil {
		rec.StudyInstanceUID = k.studyInstanceUID
	}
	return k, err
}

// openInstance reads the start of a file: File Meta Information, or the
// first element of a bare data set. It leaves br at the data set.
func openInstance(br *bufio.Reader) (*Incoming, error) {
	if head, _ := br.Peek(132); len(head) == 132 && string(head[128:]) == "DICM" {
		fm, _, err := dicom.ReadFileMeta(br)
		if err != nil {
			return nil, err
		}
		if _, ok := uid.LookupTransferSyntax(fm.TransferSyntaxUID); !ok {
			return nil, fmt.Errorf("%w: transfer syntax %q is unknown", ErrRefused, fm.TransferSyntaxUID)
		}
		return &Incoming{SOPClassUID: fm.MediaStorageSOPClassUID, SOPInstanceUID: fm.MediaStorageSOPInstanceUID,
			TransferSyntaxUID: fm.TransferSyntaxUID, Dataset: br, Exact: true}, nil
	}
	ts, ok := bareSyntax(br)
	if !ok {
		return nil, fmt.Errorf("%w: no Part-10 preamble, and no data set element at the start", errNotDICOM)
	}
	return &Incoming{TransferSyntaxUID: ts, Dataset: br, Exact: true}, nil
}

// bareSyntax tells the transfer syntax of a data set without File Meta
// Information from its first element, which must be of group 0008 (or
// a group length), little endian; an explicit VR is two capital letters.
func bareSyntax(br *bufio.Reader) (string, bool) {
	b, err := br.Peek(8)
	if err != nil {
		return "", false
	}
	group, elem := binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:])
	if group != 0x0008 || elem > 0x0018 && elem != 0x0020 {
		return "", false
	}
	if b[4] >= 'A' && b[4] <= 'Z' && b[5] >= 'A' && b[5] <= 'Z' {
		return uid.ExplicitVRLittleEndian, true
	}
	return uid.ImplicitVRLittleEndian, true
}

// identify reads the SOP Instance and Class UIDs from the start of a data
// set without consuming it.
func identify(br *bufio.Reader, ts string) (sop, class string, err error) {
	head, _ := br.Peek(br.Size())
	syntax, _ := uid.LookupTransferSyntax(ts)
	sc := dicom.NewScanner(strings.NewReader(string(head)), syntax, dicom.Limits{Identify: len(head)})
	defer sc.Close()
	id, err := sc.Identify()
	if err != nil || id.SOPInstanceUID == "" {
		return "", "", fmt.Errorf("%w: no SOP Instance UID in the first %d bytes: %v", ErrRefused, len(head), err)
	}
	return id.SOPInstanceUID, id.SOPClassUID, nil
}

// note records what a stored file tells of its study.
func (r *importRun) note(k *kept, rec *File) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.studies[k.studyInstanceUID]
	if !ok {
		st = &importStudy{row: Study{StudyInstanceUID: k.studyInstanceUID}}
		r.studies[k.studyInstanceUID] = st
	}
	st.row.Bytes += k.bytes
	if p := k.patient; p != nil {
		if st.row.PatientID == "" && st.row.PatientName == "" {
			st.row.PatientID, st.row.IssuerOfPatientID, st.row.PatientName, st.row.PatientBirthDate = p.ID, p.Issuer, p.Name, p.BirthDate
		}
		if !slices.ContainsFunc(st.patients, func(q *patient) bool { return *q == *p }) {
			st.patients = append(st.patients, p)
		}
		if st.row.StudyDate == "" {
			st.row.StudyDate, st.row.StudyTime, st.row.AccessionNumber = k.studyDate, k.studyTime, k.accession
		}
		if k.modality != "" && !slices.Contains(strings.Split(st.row.Modalities, `\`), k.modality) {
			st.row.Modalities = strings.TrimPrefix(st.row.Modalities+`\`+k.modality, `\`)
		}
	}
}

// recount sets the rows of the studies the import read from the records
// of all their files.
func (r *importRun) recount(ctx context.Context, sum *ImportSummary) error {
	type counts struct{ files, verified, failed, conflict int }
	byStudy := map[string]*counts{}
	var reasons = map[string][]string{}
	for f, err := range r.im.State.Files(ctx, r.mig.ID) {
		if err != nil {
			return err
		}
		if f.StudyInstanceUID == "" {
			continue
		}
		c := byStudy[f.StudyInstanceUID]
		if c == nil {
			c = &counts{}
			byStudy[f.StudyInstanceUID] = c
		}
		c.files++
		switch f.State {
		case FileVerified:
			c.verified++
		case FileConflict:
			c.conflict++
			reasons[f.StudyInstanceUID] = append(reasons[f.StudyInstanceUID], f.Path+": "+f.Reason)
		default:
			c.failed++
			reasons[f.StudyInstanceUID] = append(reasons[f.StudyInstanceUID], f.Path+": "+f.Reason)
		}
	}
	for study, c := range byStudy {
		row, err := r.im.State.Study(ctx, r.mig.ID, study)
		if errors.Is(err, ErrNotFound) {
			row, err = &Study{StudyInstanceUID: study}, nil
		}
		if err != nil {
			return err
		}
		if st, ok := r.studies[study]; ok {
			bytes := row.Bytes
			attempts := row.Attempts
			*row = st.row
			row.Bytes += bytes
			row.Attempts = attempts + 1
			if len(st.patients) > 1 {
				var list []string
				for _, p := range st.patients {
					list = append(list, p.ID+" "+p.String())
				}
				slices.Sort(list)
				reasons[study] = append(reasons[study], "the study's files disagree on the patient: "+strings.Join(list, ", "))
				c.conflict++
			}
		}
		row.InstancesAtSource, row.InstancesHere = c.files, c.verified
		row.State, row.LastError = Verified, ""
		switch {
		case c.conflict > 0:
			row.State = Conflict
		case c.failed > 0:
			row.State = Failed
		}
		if row.State != Verified {
			row.LastError = listUIDs(reasons[study], 10)
		}
		if err := r.im.State.PutStudy(ctx, r.mig.ID, row); err != nil {
			return err
		}
		sum.ByState[row.State]++
	}
	return nil
}
