package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// The C-GET conversion measurement: a study of CT slices stored in
// JPEG-LS Lossless is retrieved with C-GET by dcmtk's getscu, which
// accepts only uncompressed syntaxes (its default), so that the archive
// decompresses every instance on the way; beside it, the same study
// stored uncompressed and sent as stored, and Orthanc doing the same
// conversion.

// getConvRun is one C-GET of one study from one peer.
type getConvRun struct {
	peer    string // "pacsd", "pacsd-uncompressed" or "orthanc"
	wall    time.Duration
	peerCPU time.Duration // the peer's user and system time meanwhile
}

// measureGetConversion writes n 512×512 12-bit CT slices in one study,
// compressed to JPEG-LS Lossless and, under other UIDs, uncompressed;
// stores both into pacsd and the JPEG-LS study into Orthanc with dcmsend
// (which sends each file in its own syntax); then times rounds C-GETs of
// each, alternating, and prints instances/s and the ratios with their
// targets.
func measureGetConversion(ctx context.Context, out io.Writer, tmp, bin string, n, rounds int, orthanc bool, logf func(string, ...any)) (err error) {
	dir := filepath.Join(tmp, "getconv")
	jls, native := filepath.Join(dir, "jpegls"), filepath.Join(dir, "native")
	for _, d := range []string{jls, native, filepath.Join(dir, "pacsd"), filepath.Join(dir, "orthanc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	logf("writing %d CT slices in JPEG-LS Lossless and uncompressed", n)
	jlsStudy, nativeStudy := "2.25.7001", "2.25.7002"
	reg := codec.New(codec.Options{})
	var jlsBytes, nativeBytes int64
	for i := range n {
		for _, c := range []struct {
			dir, study string
			ts         string
			size       *int64
		}{{jls, jlsStudy, uid.JPEGLSLossless, &jlsBytes}, {native, nativeStudy, uid.ExplicitVRLittleEndian, &nativeBytes}} {
			ds := ctSlice(c.study, fmt.Sprintf("%s.%d", c.study, i+1), i)
			var enc bytes.Buffer
			if _, err := reg.Transcode(ctx, &enc, bytes.NewReader(ds), uid.ExplicitVRLittleEndian, c.ts, codec.TranscodeOptions{}); err != nil {
				return err
			}
			path := filepath.Join(c.dir, fmt.Sprintf("%04d.dcm", i+1))
			if err := writeFileUIDs(path, enc.Bytes(), c.ts, fmt.Sprintf("%s.%d", c.study, i+1)); err != nil {
				return err
			}
			*c.size += int64(enc.Len())
		}
	}

	type target struct {
		name, study string
		s           *server
	}
	var targets []target
	logf("starting pacsd and storing both studies")
	p, err := startPacsd(ctx, bin, filepath.Join(dir, "pacsd"), nil)
	if err != nil {
		return err
	}
	defer p.stop()
	for _, d := range []string{jls, native} {
		if err := dcmsend(ctx, p, d); err != nil {
			return err
		}
	}
	targets = append(targets, target{"pacsd", jlsStudy, p}, target{"pacsd-uncompressed", nativeStudy, p})
	if orthanc {
		logf("starting Orthanc and storing the JPEG-LS study")
		o, err := orthancPeer(false, false).start(ctx, filepath.Join(dir, "orthanc"))
		if err != nil {
			return err
		}
		defer o.stop()
		if err := dcmsend(ctx, o, jls); err != nil {
			return err
		}
		targets = append(targets, target{"orthanc", jlsStudy, o})
	}

	// Once, untimed: every instance arrives, uncompressed and whole.
	for _, tg := range targets {
		if err := checkGet(ctx, tg.s, tg.study, filepath.Join(dir, "check-"+tg.name), n); err != nil {
			return fmt.Errorf("C-GET from %s: %w", tg.name, err)
		}
	}
	var runs []getConvRun
	for round := range rounds {
		for slot := range targets {
			tg := targets[(round+slot)%len(targets)]
			cpu0, _ := procCPU(tg.s.pid)
			wall, got, err := getscuIgnore(ctx, tg.s, tg.study)
			cpu1, _ := procCPU(tg.s.pid)
			if err != nil {
				return fmt.Errorf("C-GET from %s: %w", tg.name, err)
			}
			if got != n {
				return fmt.Errorf("C-GET from %s: %d of %d instances delivered", tg.name, got, n)
			}
			logf("C-GET round %d/%d  %-20s %7.3f s  %7.1f instances/s  peer CPU/wall %.2f", round+1, rounds, tg.name, wall.Seconds(), perSecond(n, wall), (cpu1-cpu0).Seconds()/wall.Seconds())
			runs = append(runs, getConvRun{peer: tg.name, wall: wall, peerCPU: cpu1 - cpu0})
		}
	}
	rate := func(peer string) float64 {
		var xs []float64
		for _, r := range runs {
			if r.peer == peer {
				xs = append(xs, perSecond(n, r.wall))
			}
		}
		return median(xs)
	}
	// cpu is the peer's median CPU milliseconds per instance, and CPU
	// seconds per wall second.
	cpu := func(peer string) (float64, float64) {
		var per, load []float64
		for _, r := range runs {
			if r.peer == peer {
				per = append(per, r.peerCPU.Seconds()*1000/float64(n))
				load = append(load, r.peerCPU.Seconds()/r.wall.Seconds())
			}
		}
		return median(per), median(load)
	}
	fmt.Fprintf(out, "\nC-GET with conversion: %d CT slices of 512x512, 12 bits, one study, in JPEG-LS Lossless (%.1f MB; %.1f MB uncompressed)\n", n, float64(jlsBytes)/1e6, float64(nativeBytes)/1e6)
	fmt.Fprintf(out, "  getscu -S --ignore (its default proposal: uncompressed syntaxes only), STUDY level; median of %d rounds, alternating\n", rounds)
	conv, plain := rate("pacsd"), rate("pacsd-uncompressed")
	line := func(what, peer string, r float64) {
		per, load := cpu(peer)
		fmt.Fprintf(out, "  %-52s %8.1f instances/s   CPU %5.1f ms/instance, %.2f CPU/wall\n", what, r, per, load)
	}
	line("pacsd, JPEG-LS decompressed on the way", "pacsd", conv)
	line("pacsd, the study stored uncompressed, sent as stored", "pacsd-uncompressed", plain)
	r := conv / plain
	fmt.Fprintf(out, "  %-52s %8.2f×    target ≥ 0.5×: %s\n", "ratio", r, map[bool]string{true: "met", false: "NOT met"}[r >= 0.5])
	if orthanc {
		o := rate("orthanc")
		line("Orthanc, JPEG-LS decompressed on the way", "orthanc", o)
		r := conv / o
		fmt.Fprintf(out, "  %-52s %8.2f×    target ≥ 2×: %s\n", "ratio pacsd / Orthanc", r, map[bool]string{true: "met", false: "NOT met"}[r >= 2])
	} else {
		fmt.Fprintf(out, "  Orthanc: not measured (-skip-orthanc)\n")
	}
	return nil
}

// ctSlice returns an explicit VR little endian CT slice of study whose
// SOP Instance UID is sop, its anatomy moved by i.
func ctSlice(study, sop string, i int) []byte {
	ds, _ := ctDatasetUIDs(12, 1, i, uid.CTImageStorage, study, sop)
	return ds
}

// dcmsend stores the files of dir into s with dcmtk's dcmsend, which
// proposes each file's own transfer syntax, and only that (-dn): by
// default it also proposes uncompressed syntaxes for lossless files, which
// Orthanc prefers, so that Orthanc would store the study decompressed.
func dcmsend(ctx context.Context, s *server, dir string) error {
	_, stderr, err := testpeer.Run(ctx, "dcmsend", "-dn", "-aet", "BENCH", "-aec", s.aet, s.host, strconv.Itoa(s.port), "+sd", dir)
	if err != nil {
		return fmt.Errorf("dcmsend: %w\n%s", err, lastLines(stderr, 15))
	}
	return nil
}

// completed reads the count of completed sub-operations from getscu's
// verbose log of its final C-GET response.
var completed = regexp.MustCompile(`Number of Completed Suboperations\s*:\s*(\d+)`)

// getscuIgnore retrieves study from s with getscu, which receives every
// instance without writing it, and returns its wall time and how many
// sub-operations completed.
func getscuIgnore(ctx context.Context, s *server, study string) (time.Duration, int, error) {
	start := time.Now()
	stdout, stderr, err := testpeer.Run(ctx, "getscu", "-v", "-S", "--ignore", "-aet", "BENCH", "-aec", s.aet,
		"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, s.host, strconv.Itoa(s.port))
	wall := time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("getscu: %w\n%s", err, lastLines(stderr, 15))
	}
	m := completed.FindAllStringSubmatch(stdout+stderr, -1)
	if len(m) == 0 {
		return 0, 0, fmt.Errorf("getscu reported no completed sub-operations:\n%s", lastLines(stdout+stderr, 15))
	}
	got, _ := strconv.Atoi(m[len(m)-1][1])
	return wall, got, nil
}

// writeFileUIDs writes a data set in syntax ts as a Part-10 file of the
// CT instance sop.
func writeFileUIDs(path string, ds []byte, ts, sop string) error {
	return os.WriteFile(path, append(fileMeta(ts, uid.CTImageStorage, sop), ds...), 0o644)
}

// checkGet retrieves study from s with getscu into dir and checks that
// it received n instances, each in an uncompressed syntax and with the
// whole of its native pixel data.
func checkGet(ctx context.Context, s *server, study, dir string, n int) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	_, stderr, err := testpeer.Run(ctx, "getscu", "-S", "-aet", "BENCH", "-aec", s.aet, "-od", dir,
		"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+study, s.host, strconv.Itoa(s.port))
	if err != nil {
		return fmt.Errorf("getscu: %w\n%s", err, lastLines(stderr, 15))
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(files) != n {
		return fmt.Errorf("%d of %d instances received", len(files), n)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			return err
		}
		meta, _, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name(), err)
		}
		if !dicom.Transcodable(meta.TransferSyntaxUID) || len(b) < 512*512*2 {
			return fmt.Errorf("%s: %d bytes in %s", f.Name(), len(b), uid.Name(meta.TransferSyntaxUID))
		}
	}
	return nil
}
