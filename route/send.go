package route

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
)

// ErrNoInstances reports a study (or series) to send of which the
// archive holds no instance.
var ErrNoInstances = errors.New("route: no instances to send")

// Finder finds archived instances.
type Finder interface {
	FindInstances(ctx context.Context, q *index.Query) iter.Seq2[*index.Instance, error]
}

// Send queues the instances of study, or of its series when series is
// not empty, for each destination, due at once and at high priority,
// even where its task was waiting for a route's window or delay or a
// retry: a person asked and waits. It returns how many instances it queued for
// each destination.
func Send(ctx context.Context, q Queue, f Finder, study, series string, destinations []string) (int, error) {
	ident := &dicom.Dataset{Elements: []dicom.Element{{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{study}}}}
	if series != "" {
		ident.Elements = append(ident.Elements, dicom.Element{Tag: tag.SeriesInstanceUID, VR: "UI", Values: []string{series}})
	}
	const batch = 500
	var es []Entry
	n := 0
	flush := func() error {
		if len(es) == 0 {
			return nil
		}
		if err := q.Enqueue(ctx, es...); err != nil {
			return fmt.Errorf("route: queue study %s: %w", study, err)
		}
		es = es[:0]
		return nil
	}
	now := time.Now()
	for in, err := range f.FindInstances(ctx, &index.Query{Level: index.ImageLevel, Identifier: ident}) {
		if err != nil {
			return 0, fmt.Errorf("route: find the instances of %s: %w", study, err)
		}
		n++
		for _, d := range destinations {
			es = append(es, Entry{Destination: d, Study: in.StudyInstanceUID, SOPInstanceUID: in.SOPInstanceUID, Due: now, Priority: High, Manual: true})
		}
		if len(es) >= batch {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if n == 0 {
		if series != "" {
			return 0, fmt.Errorf("%w: series %s of study %s", ErrNoInstances, series, study)
		}
		return 0, fmt.Errorf("%w: study %s", ErrNoInstances, study)
	}
	return n, nil
}
