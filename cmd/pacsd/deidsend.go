package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/pacsd/pacsd/deid"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/route"
)

// deidentifyDestinations makes the DIMSE destinations whose settings say
// "deidentify": "basic" receive de-identified copies only, under the
// project key; the index keeps the mapping, which every node shares.
func deidentifyDestinations(rt *routing, settings map[string]destinationSettings, key []byte, mapping deid.MappingStore) error {
	for name, ds := range settings {
		switch {
		case ds.Deidentify == "":
			continue
		case ds.Deidentify != "basic":
			return fmt.Errorf("destinations: %s: deidentify %q: the profile pacsd applies is basic", name, ds.Deidentify)
		case key == nil:
			return fmt.Errorf("destinations: %s: deidentify needs --deid-key, the project key that keeps pseudonyms the same across sends", name)
		}
		i := slices.IndexFunc(rt.destinations, func(d route.Destination) bool { return d.Name == name })
		if i < 0 {
			return fmt.Errorf("destinations: %s: deidentify set for an unknown destination", name)
		}
		s, ok := rt.destinations[i].Sender.(*route.DIMSE)
		if !ok {
			return fmt.Errorf("destinations: %s: deidentify is supported for remote AEs (C-STORE) only", name)
		}
		d, err := deid.New(deid.Options{Key: key, Mapping: mapping, AllowBurnedIn: ds.AllowBurnedIn})
		if err != nil {
			return err
		}
		s.Datasets = deidDatasets{Datasets: s.Datasets, d: d}
		rt.destinations[i].Sender = deidSender{Sender: s, d: d}
	}
	return nil
}

// deidSender sends a shipment's instances under their pseudonymous UIDs,
// and reports each under its own.
type deidSender struct {
	route.Sender
	d *deid.Deidentifier
}

func (s deidSender) Send(ctx context.Context, sh *route.Shipment) error {
	out := *sh
	out.Study = s.d.UID(sh.Study)
	out.Instances = make([]*index.Instance, len(sh.Instances))
	original := make(map[string]string, len(sh.Instances))
	for i, in := range sh.Instances {
		c := *in
		c.SOPInstanceUID = s.d.UID(in.SOPInstanceUID)
		c.SeriesInstanceUID = s.d.UID(in.SeriesInstanceUID)
		c.StudyInstanceUID = s.d.UID(in.StudyInstanceUID)
		original[c.SOPInstanceUID] = in.SOPInstanceUID
		out.Instances[i] = &c
	}
	out.Report = func(sop, refused string) { sh.Report(original[sop], refused) }
	return s.Sender.Send(ctx, &out)
}

// deidDatasets opens the de-identified copy of an instance, rewritten as
// it is read. The instance's record names its pseudonymous UIDs (see
// deidSender); its Key is the archived object's.
type deidDatasets struct {
	route.Datasets
	d *deid.Deidentifier
}

func (o deidDatasets) OpenDataset(ctx context.Context, in *index.Instance, ts string) (dicom.FileMeta, io.ReadCloser, error) {
	fm, rc, err := o.Datasets.OpenDataset(ctx, in, ts)
	if err != nil {
		return fm, nil, err
	}
	syntax, ok := uid.LookupTransferSyntax(ts)
	if !ok {
		rc.Close()
		return fm, nil, fmt.Errorf("transfer syntax %q is unknown", ts)
	}
	fm.MediaStorageSOPInstanceUID = in.SOPInstanceUID
	pr, pw := io.Pipe()
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		defer rc.Close()
		_, err := o.d.Rewrite(ctx, &firstWrite{w: pw, started: started}, rc, syntax)
		pw.CloseWithError(err)
		done <- err
	}()
	// An instance refused before a byte is written, such as one with
	// burned-in annotation, is refused here, for good.
	select {
	case <-started:
		return fm, pr, nil
	case err := <-done:
		if err == nil {
			return fm, pr, nil
		}
		pr.Close()
		if errors.Is(err, deid.ErrBurnedIn) || errors.Is(err, deid.ErrUnsupported) {
			return fm, nil, fmt.Errorf("%w: %w", route.ErrNotSendable, err)
		}
		return fm, nil, err
	}
}

// firstWrite closes started on the first write to w.
type firstWrite struct {
	w       io.Writer
	started chan struct{}
	once    bool
}

func (f *firstWrite) Write(p []byte) (int, error) {
	if !f.once {
		f.once = true
		close(f.started)
	}
	return f.w.Write(p)
}
