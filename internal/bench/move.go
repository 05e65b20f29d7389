package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// The C-MOVE measurement: the series of the store measurement, one study,
// is stored into a fresh peer and then moved from it to a fresh dcmtk
// storescp, with one C-MOVE at STUDY level.

// moveDestination is the AE title of the storescp the studies are moved
// to; both peers know it by that title from their configuration.
const moveDestination = "BENCHSCP"

// moveResult is one C-MOVE of the study from one peer.
type moveResult struct {
	round, slot int
	peer        string
	wall        time.Duration // of the C-MOVE, request to final response
	peerCPU     time.Duration // the peer's user and system time meanwhile
	peerRead    bool
}

// measureMoves moves the study out of every peer, o.rounds times,
// rotating the order of the peers by one each round.
func measureMoves(ctx context.Context, o options, peers []peer, tmp, corpus, study string, logf func(string, ...any)) ([]moveResult, error) {
	var runs []moveResult
	for round := range o.rounds {
		for slot := range peers {
			p := peers[(round+slot)%len(peers)]
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			res, err := moveFrom(ctx, p, filepath.Join(tmp, fmt.Sprintf("move-%s-%d", p.name, round+1)), o.instances, corpus, study)
			if err != nil {
				return nil, fmt.Errorf("C-MOVE round %d, %s: %w", round+1, p.name, err)
			}
			res.round, res.slot, res.peer = round+1, slot+1, p.name
			logf("C-MOVE round %d/%d  %-12s %7.3f s  %7.1f instances/s", round+1, o.rounds, p.name,
				res.wall.Seconds(), perSecond(o.instances, res.wall))
			runs = append(runs, res)
		}
	}
	return runs, nil
}

// moveFrom starts a storescp and then p, which knows the storescp as a
// move destination, in the new directory dir; stores the series into p
// with storescu; and times one C-MOVE of the study to the storescp, which
// must then hold all n instances.
func moveFrom(ctx context.Context, p peer, dir string, n int, corpus, study string) (res moveResult, err error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return res, err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	scp, err := testpeer.StartStoreSCP(ctx, testpeer.StoreSCPOptions{AET: moveDestination, Dir: filepath.Join(dir, "storescp")})
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := scp.Stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	pdir := filepath.Join(dir, p.name)
	if err := os.Mkdir(pdir, 0o755); err != nil {
		return res, err
	}
	s, err := p.start(ctx, pdir, scp.Modality())
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := s.stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = serr
		}
	}()
	if _, err := send(ctx, s, true, corpus); err != nil {
		return res, err
	}
	if got, err := s.stored(ctx); err != nil || got != n {
		return res, fmt.Errorf("%s holds %d of %d instances after storescu (%v); see %s", p.name, got, n, err, s.log)
	}

	d := &dimse.Dialer{CallingAE: "BENCH", CalledAE: s.aet, Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelMove, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian}},
	}}
	a, err := d.Dial(ctx, s.addr())
	if err != nil {
		return res, err
	}
	defer a.Release(context.WithoutCancel(ctx))
	ident := &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{"STUDY"}},
		{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}},
	}}
	// As in the store measurement, the dirty pages of the store are
	// written out first, so that the move does not pay for them.
	syscall.Sync()
	cpu0, err0 := procCPU(s.pid)
	start := time.Now()
	subs, err := a.Move(ctx, uid.StudyRootQueryRetrieveInformationModelMove, moveDestination, ident, nil)
	res.wall = time.Since(start)
	cpu1, err1 := procCPU(s.pid)
	res.peerCPU, res.peerRead = cpu1-cpu0, err0 == nil && err1 == nil
	if err != nil {
		return res, fmt.Errorf("C-MOVE: %w (%d completed, %d failed); see %s", err, subs.Completed, subs.Failed, s.log)
	}
	if subs.Completed+subs.Warning != n || subs.Failed != 0 {
		return res, fmt.Errorf("C-MOVE: %d completed, %d with warnings, %d failed, want %d completed", subs.Completed, subs.Warning, subs.Failed, n)
	}
	files, err := scp.Files()
	if err != nil {
		return res, err
	}
	if len(files) != n {
		return res, fmt.Errorf("storescp holds %d of the %d instances moved; see %s", len(files), n, scp.Process().Log())
	}
	return res, nil
}

// printMove prints the C-MOVE measurement.
func (r *report) printMove(w io.Writer) {
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	if r.moves == nil {
		p("C-MOVE: not measured (-skip-move)")
		p("")
		return
	}
	p("C-MOVE throughput: the series, one study, moved at STUDY level (Study Root) to dcmtk's storescp")
	p("to        storescp as testpeer starts it (+xa, one file per instance, no fsync), AE title %s, known to", moveDestination)
	p("          pacsd as --remote-ae %s=127.0.0.1:<port> and to Orthanc from its DicomModalities", moveDestination)
	p("retriever pacsd's own SCU (dimse.Association.Move) on an association of its own; the figure is the C-MOVE's time,")
	p("          request to final response, which includes the peer's association to storescp and its release")
	p("rounds    %d: each round starts a fresh storescp and a fresh peer in an empty directory, stores the series into", o.rounds)
	p("          the peer with storescu, syncs the machine's dirty pages and moves the study, for each peer in turn,")
	p("          in an order rotated by one each round; the peer reads the files from the page cache")
	p("")
	p("throughput over %d round(s): median, minimum and maximum of instances/s; the other columns are medians", o.rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tinstances/s\tmin\tmax\tMB/s\tpeer CPU ms/instance\t")
	medians := map[string]float64{}
	for _, pe := range r.qrPeers {
		var rate, mbps, cpu []float64
		cpuRead := true
		for _, m := range r.moves {
			if m.peer != pe.name {
				continue
			}
			rate = append(rate, perSecond(o.instances, m.wall))
			mbps = append(mbps, float64(r.corpusBytes)/1e6/m.wall.Seconds())
			cpu = append(cpu, m.peerCPU.Seconds()*1e3/float64(o.instances))
			cpuRead = cpuRead && m.peerRead
		}
		medians[pe.name] = median(rate)
		perInstance := "n/a"
		if cpuRead {
			perInstance = fmt.Sprintf("%.2f", median(cpu))
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n", pe.name, median(rate), slices.Min(rate), slices.Max(rate), median(mbps), perInstance)
	}
	tw.Flush()
	for _, pe := range r.qrPeers[1:] {
		x := medians[r.qrPeers[0].name] / medians[pe.name]
		verdict := "met"
		if x < targetMoveVsOrthanc {
			verdict = "not met"
		}
		p("ratio of medians  %s / %s  %5.2f   target ≥ %.1f  %s", r.qrPeers[0].name, pe.name, x, targetMoveVsOrthanc, verdict)
	}
	p("")
	p("every C-MOVE (order: slot within its round; CPU in seconds)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tslot\tpeer\twall s\tinstances/s\tpeer CPU\t")
	for _, m := range r.moves {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%.3f\t%.1f\t%.2f\t\n", m.round, m.slot, m.peer, m.wall.Seconds(), perSecond(o.instances, m.wall), m.peerCPU.Seconds())
	}
	tw.Flush()
	p("")
}
