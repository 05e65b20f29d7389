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

// deidentifyDestinations makes the destinations that receive
// de-identified copies only — those whose settings in "destinations", or
// whose routes, say "deidentify": "basic" — receive them, under the
// project key; the index keeps the mapping, which every node shares.
// Remote AEs get them by C-STORE, DICOMweb destinations by STOW-RS.
func deidentifyDestinations(rt *routing, settings map[string]destinationSettings, key []byte, mapping deid.MappingStore) error {
	for i := range rt.destinations {
		dest := &rt.destinations[i]
		ds := settings[dest.Name]
		profile, allowBurnedIn, where := ds.Deidentify, ds.AllowBurnedIn, "destinations: "+dest.Name
		if rt.rules != nil {
			if p, allow := rt.rules.Deidentify(dest.Name); p != "" {
				profile, allowBurnedIn, where = p, allowBurnedIn || allow, "routes to "+dest.Name
			}
		}
		switch {
		case profile == "":
			continue
		case profile != route.DeidentifyBasic:
			return fmt.Errorf("%s: deidentify %q: the profile pacsd applies is basic", where, profile)
		case key == nil:
			return fmt.Errorf("%s: deidentify needs --deid-key, the project key that keeps pseudonyms the same across sends", where)
		}
		d, err := deid.New(deid.Options{Key: key, Mapping: mapping, AllowBurnedIn: allowBurnedIn})
		if err != nil {
			return err
		}
		switch s := dest.Sender.(type) {
		case *route.DIMSE:
			s.Datasets = deidDatasets{Datasets: s.Datasets, d: d}
		case *route.Web:
			s.Datasets = deidDatasets{Datasets: s.Objects, d: d}
		default:
			return fmt.Errorf("%s: deidentify is supported for remote AEs (C-STORE) and DICOMweb destinations (STOW-RS) only", where)
		}
		dest.Sender = deidSender{Sender: dest.Sender, d: d}
	}
	for name, ds := range settings {
		if ds.Deidentify != "" && !slices.ContainsFunc(rt.destinations, func(d route.Destination) bool { return d.Name == name }) {
			return fmt.Errorf("destinations: %s: deidentify set for an unknown destination", name)
		}
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
	// The File Meta Information is written anew: the AE titles the
	// original came by say where it was made.
	fm = dicom.FileMeta{
		MediaStorageSOPClassUID:    in.SOPClassUID,
		MediaStorageSOPInstanceUID: in.SOPInstanceUID,
		TransferSyntaxUID:          ts,
		ImplementationClassUID:     dicom.ImplementationClassUID,
		ImplementationVersionName:  dicom.ImplementationVersionName,
	}
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
