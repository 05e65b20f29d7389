package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
)

// measureRendered times WADO-RS /rendered of 512×512 16-bit CT slices,
// stored uncompressed and in JPEG-LS Lossless, and /thumbnail of a series
// of n such slices, over HTTP against a running pacsd and, with orthanc,
// against Orthanc's DICOMweb plugin beside it. reps requests of each,
// alternating between the peers; it prints the medians and p95s. Each
// round renders another slice, so that neither peer answers from a cache
// of decoded or rendered frames (Orthanc keeps parsed instances in
// memory): what is measured is a frame's first rendering.
func measureRendered(ctx context.Context, out io.Writer, tmp, bin string, n, reps int, orthanc bool, logf func(string, ...any)) (err error) {
	dir := filepath.Join(tmp, "rendered")
	native, jls := filepath.Join(dir, "native"), filepath.Join(dir, "jpegls")
	for _, d := range []string{native, jls, filepath.Join(dir, "pacsd"), filepath.Join(dir, "orthanc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	jlsN := min(n, reps+1)
	logf("writing a series of %d CT slices, and %d in JPEG-LS Lossless", n, jlsN)
	study, jlsStudy := "2.25.8001", "2.25.8002"
	reg := codec.New(codec.Options{})
	for i := range n {
		sop := fmt.Sprintf("%s.%d", study, i+1)
		if err := writeFileUIDs(filepath.Join(native, fmt.Sprintf("%04d.dcm", i+1)), ctSlice(study, sop, i), uid.ExplicitVRLittleEndian, sop); err != nil {
			return err
		}
		if i >= jlsN {
			continue
		}
		sop = fmt.Sprintf("%s.%d", jlsStudy, i+1)
		var enc bytes.Buffer
		if _, err := reg.Transcode(ctx, &enc, bytes.NewReader(ctSlice(jlsStudy, sop, i)), uid.ExplicitVRLittleEndian, uid.JPEGLSLossless, codec.TranscodeOptions{}); err != nil {
			return err
		}
		if err := writeFileUIDs(filepath.Join(jls, fmt.Sprintf("%04d.dcm", i+1)), enc.Bytes(), uid.JPEGLSLossless, sop); err != nil {
			return err
		}
	}

	type target struct {
		name string
		s    *server
	}
	logf("starting pacsd and storing the series")
	p, err := startPacsd(ctx, bin, filepath.Join(dir, "pacsd"), nil)
	if err != nil {
		return err
	}
	defer p.stop()
	targets := []target{{"pacsd", p}}
	if orthanc {
		logf("starting Orthanc with its DICOMweb plugin and storing the series")
		o, err := orthancPeer(false, true).start(ctx, filepath.Join(dir, "orthanc"))
		if err != nil {
			return err
		}
		defer o.stop()
		targets = append(targets, target{"orthanc", o})
	}
	for _, tg := range targets {
		for _, d := range []string{native, jls} {
			if err := dcmsend(ctx, tg.s, d); err != nil {
				return err
			}
		}
	}
	// The series' UID is the study's with ".1" (ctDatasetUIDs); round i
	// renders slice i+1 (of the JPEG-LS ones, slice i%jlsN+1).
	slice := func(study string, i int) string {
		return "/studies/" + study + "/series/" + study + ".1/instances/" + fmt.Sprintf("%s.%d", study, i+1) + "/rendered"
	}
	// Orthanc's DICOMweb plugin (1.x in Debian) serves no /thumbnail.
	requests := []struct {
		what    string
		path    func(round int) string
		orthanc bool
	}{
		{"/rendered, uncompressed", func(i int) string { return slice(study, i%n) }, true},
		{"/rendered, JPEG-LS Lossless", func(i int) string { return slice(jlsStudy, i%jlsN) }, true},
		{fmt.Sprintf("series /thumbnail, %d instances", n), func(int) string { return "/studies/" + study + "/series/" + study + ".1/thumbnail" }, false},
	}
	c := newWebClient()
	times := map[string][]float64{} // by target and request
	for i := range reps + 1 {
		for slot := range targets {
			tg := targets[(i+slot)%len(targets)]
			for _, r := range requests {
				if tg.name == "orthanc" && !r.orthanc {
					continue
				}
				res, err := get(ctx, c, tg.s, tg.s.web+r.path(i), "image/jpeg", false)
				if err != nil {
					return fmt.Errorf("%s: %w", tg.name, err)
				}
				if i > 0 { // the first round warms caches and connections
					k := tg.name + " " + r.what
					times[k] = append(times[k], float64(res.wall)/float64(time.Millisecond))
				}
			}
		}
	}
	fmt.Fprintf(out, "\nWADO-RS rendering over HTTP: 512x512 CT slices, 12 bits stored in 16, as image/jpeg; %d requests each, another slice each round, alternating between peers (load average %s)\n", reps, loadAverage())
	fmt.Fprintf(out, "  %-36s %-22s %-22s %-14s %s\n", "", "pacsd p50 / p95 ms", "Orthanc p50 / p95 ms", "Orthanc/pacsd", "target (pacsd p50)")
	targetsMS := []float64{10, 10, 50}
	for ri, r := range requests {
		p50 := map[string]float64{}
		cells := map[string]string{}
		for _, tg := range targets {
			xs := times[tg.name+" "+r.what]
			if len(xs) == 0 {
				cells[tg.name] = "not served"
				continue
			}
			slices.Sort(xs)
			p50[tg.name] = median(xs)
			cells[tg.name] = fmt.Sprintf("%7.2f / %7.2f", p50[tg.name], xs[min(len(xs)-1, len(xs)*95/100)])
		}
		switch {
		case !orthanc:
			cells["orthanc"] = "not measured"
		case cells["orthanc"] == "":
			cells["orthanc"] = "not served"
		}
		ratio := "-"
		if o, ok := p50["orthanc"]; ok && p50["pacsd"] > 0 {
			ratio = fmt.Sprintf("%.2f×", o/p50["pacsd"])
		}
		verdict := fmt.Sprintf("≤ %.0f ms: %s", targetsMS[ri], map[bool]string{true: "met", false: "NOT met"}[p50["pacsd"] <= targetsMS[ri]])
		fmt.Fprintf(out, "  %-36s %-22s %-22s %-14s %s\n", r.what, cells["pacsd"], cells["orthanc"], ratio, verdict)
	}
	if !orthanc {
		fmt.Fprintf(out, "  Orthanc: not measured (-skip-orthanc)\n")
	}
	return nil
}
