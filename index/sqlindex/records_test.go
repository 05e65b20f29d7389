package sqlindex_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlite"
)

// TestRemoveManyKeys removes, by the record of a deletion, more objects
// than one statement names (the engines limit their parameters).
func TestRemoveManyKeys(t *testing.T) {
	ctx := t.Context()
	db, err := sqlite.Open(ctx, sqlite.Memory)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const n = 1002 // two chunks of keys to remove
	var keys []string
	for i := range n {
		in := &index.Instance{SOPInstanceUID: fmt.Sprintf("1.2.5.%d", i+1), SeriesInstanceUID: "1.2.5.100", StudyInstanceUID: "1.2.5",
			SOPClassUID: "1.2", Key: fmt.Sprintf("1.2.5/1.2.5.100/1.2.5.%d.dcm", i+1), ReceivedAt: time.Now()}
		if _, err := db.Put(ctx, &index.PutRequest{Instance: in}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, in.Key)
	}
	removed, err := db.Remove(ctx, index.Removal{Selection: index.Selection{StudyInstanceUID: "1.2.5"}, Reason: "test", Keys: keys[1:], Record: "r"})
	if err != nil || len(removed) != n-1 {
		t.Fatalf("Remove of %d objects by record = %d, %v", n-1, len(removed), err)
	}
	st, err := db.Study(ctx, "1.2.5")
	if err != nil || st.NumberOfStudyRelatedInstances != 1 {
		t.Errorf("study after removing all objects but one: %+v, %v", st, err)
	}
}
