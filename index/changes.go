package index

import "time"

// The change feed is the ordered history of what happened to the
// instances the index holds, for systems that follow an archive rather
// than query it (a research copy, a cache, a search engine): every
// instance recorded, replaced, corrected or deleted is one entry, numbered
// in the order the changes became visible. Microsoft's DICOM Change Feed
// is the model.
//
// The numbers have no gaps and are never reused, and an entry is readable
// as soon as, and not before, its change is: a reader that has read up to
// sequence number N and asks for what follows never misses an entry
// numbered below a later one, however many nodes write to the index. The
// entries are written in the transaction of the change they record.

// FeedEntry is one entry of the change feed.
type FeedEntry struct {
	// Seq numbers the entry: 1 for the first, then one more for each.
	Seq  int64
	Kind ChangeKind
	// Time is when the change was recorded, by the index's clock, to
	// the microsecond in UTC.
	Time time.Time

	StudyInstanceUID  string
	SeriesInstanceUID string
	SOPInstanceUID    string
}
