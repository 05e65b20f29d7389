package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/postgres"
	"github.com/pacsd/pacsd/index/sqlindex"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage/file"
)

// The deletion measurement: a study of trashInstances instances, each an
// object of trashObjectSize bytes in filesystem storage, is deleted as
// DELETE /dicom-web/studies/{study} deletes it (archive.Trash.Delete:
// one index transaction), and the time until a study-level query no
// longer finds it is taken; then the trash is purged (archive.Trash.Purge:
// claim in the index, delete the objects, forget them) and its rate in
// objects per second is taken. Beside it, the same number of files of the
// same size removed by a plain loop of os.Remove, the floor any purge of
// the filesystem stands on. On SQLite and PostgreSQL, rounds alternating.

const (
	trashInstances     = 1000
	trashObjectSize    = 16 << 10
	targetHideSeconds  = 1.0
	targetPurgePerSec  = 500.0
	trashStudyUIDRoot  = "1.2.826.0.1.3680043.2.1125.7."
	trashSOPClassCTImg = "1.2.840.10008.5.1.4.1.1.2"
)

// trashRound is one delete and purge of a study.
type trashRound struct {
	hide, purge, raw time.Duration
}

// trashResult is the measurement on one database.
type trashResult struct {
	db     string
	rounds []trashRound
}

// measureTrash runs the deletion measurement.
func measureTrash(ctx context.Context, tmp string, rounds int, logf func(string, ...any)) ([]trashResult, error) {
	dir := filepath.Join(tmp, "trash")
	sq, err := sqlite.Open(ctx, filepath.Join(dir, "index.db"))
	if err != nil {
		return nil, err
	}
	defer sq.Close()
	pg, err := testpeer.StartPostgres(ctx, filepath.Join(dir, "postgres"))
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	pdb, err := postgres.Open(ctx, pg.URL())
	if err != nil {
		return nil, err
	}
	defer pdb.Close()
	dbs := []struct {
		name string
		db   *sqlindex.DB
	}{{"sqlite", sq}, {"postgres", pdb}}
	out := []trashResult{{db: "sqlite"}, {db: "postgres"}}
	for i := range rounds {
		for j, d := range dbs {
			r, err := trashRoundOn(ctx, d.db, filepath.Join(dir, fmt.Sprintf("%s-%d", d.name, i)), fmt.Sprintf("%d%d", j+1, i))
			if err != nil {
				return nil, fmt.Errorf("deletion on %s: %w", d.name, err)
			}
			logf("deletion on %s, round %d: hidden in %s, purged at %.0f objects/s (os.Remove %.0f/s)", d.name, i+1,
				r.hide.Round(time.Millisecond), perSecond(trashInstances, r.purge), perSecond(trashInstances, r.raw))
			out[j].rounds = append(out[j].rounds, r)
		}
	}
	return out, nil
}

func trashRoundOn(ctx context.Context, db *sqlindex.DB, dir, id string) (trashRound, error) {
	var r trashRound
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o755); err != nil {
		return r, err
	}
	store, err := file.New(filepath.Join(dir, "objects"))
	if err != nil {
		return r, err
	}
	study := trashStudyUIDRoot + id
	body := make([]byte, trashObjectSize)
	h := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.PatientID, VR: "LO", Values: []string{"TRASH" + id}},
		{Tag: tag.StudyDate, VR: "DA", Values: []string{"20240101"}},
		{Tag: tag.Modality, VR: "CS", Values: []string{"CT"}},
	}}
	for i := range trashInstances {
		series := fmt.Sprintf("%s.%d", study, i%4+1)
		sop := fmt.Sprintf("%s.%d", series, i+1)
		key := archive.Key(study, series, sop, "")
		if _, err := store.Put(ctx, key, bytes.NewReader(body), int64(len(body))); err != nil {
			return r, err
		}
		in := &index.Instance{SOPInstanceUID: sop, SOPClassUID: trashSOPClassCTImg, SeriesInstanceUID: series, StudyInstanceUID: study,
			Key: key, Size: int64(len(body)), SHA256: "00", TransferSyntaxUID: "1.2.840.10008.1.2.1", Header: h}
		if _, err := db.Put(ctx, &index.PutRequest{Instance: in}); err != nil {
			return r, err
		}
	}
	trash := &archive.Trash{Store: store, Index: db}
	q := &index.Query{Level: index.StudyLevel, Identifier: &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}}}}}
	start := time.Now()
	if _, err := trash.Delete(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: study}, Reason: "bench"}); err != nil {
		return r, err
	}
	for _, err := range db.Find(ctx, q) {
		if err != nil {
			return r, err
		}
		return r, fmt.Errorf("study %s still found after its deletion", study)
	}
	r.hide = time.Since(start)

	start = time.Now()
	res, err := trash.Purge(ctx, time.Now(), "bench")
	if err != nil {
		return r, err
	}
	r.purge = time.Since(start)
	if res.Objects != trashInstances {
		return r, fmt.Errorf("purge deleted %d objects, want %d", res.Objects, trashInstances)
	}

	raw := filepath.Join(dir, "raw")
	if err := os.MkdirAll(raw, 0o755); err != nil {
		return r, err
	}
	for i := range trashInstances {
		if err := os.WriteFile(filepath.Join(raw, fmt.Sprint(i)), body, 0o644); err != nil {
			return r, err
		}
	}
	start = time.Now()
	for i := range trashInstances {
		if err := os.Remove(filepath.Join(raw, fmt.Sprint(i))); err != nil {
			return r, err
		}
	}
	r.raw = time.Since(start)
	return r, os.RemoveAll(dir)
}

// printTrash prints the deletion measurement.
func printTrash(w io.Writer, rs []trashResult) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("Deletion: a study of %d instances (%d KiB objects, filesystem storage) deleted as DELETE /dicom-web/studies/{study}", trashInstances, trashObjectSize>>10)
	p("          does it, until a STUDY query no longer finds it; then the trash purged (objects deleted, records forgotten),")
	p("          beside a loop of os.Remove over as many files; medians of the rounds")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "index\trounds\thide s\ttarget\tpurge objects/s\tos.Remove files/s\tpurge/os.Remove\ttarget\t")
	for _, r := range rs {
		var hide, purge, raw []float64
		for _, x := range r.rounds {
			hide = append(hide, x.hide.Seconds())
			purge = append(purge, perSecond(trashInstances, x.purge))
			raw = append(raw, perSecond(trashInstances, x.raw))
		}
		h, pu, ra := median(hide), median(purge), median(raw)
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t≤ %.0f s %s\t%.0f\t%.0f\t%.2f\t≥ %.0f/s %s\t\n", r.db, len(r.rounds), h, targetHideSeconds,
			verdict(h <= targetHideSeconds), pu, ra, pu/ra, targetPurgePerSec, verdict(pu >= targetPurgePerSec))
	}
	tw.Flush()
	p("")
}
