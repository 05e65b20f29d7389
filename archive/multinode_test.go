package archive

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index/postgres"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage/mem"
)

// TestTwoNodesStoreOneInstance runs two archive services, as two nodes
// do, on one PostgreSQL database and one bucket, and has both store the
// same instance at once, round after round, each with bytes of its own.
// Whoever wins a round, the record and the object it names come from the
// same store, the latest version received wins, and nothing is left for
// Verify to report.
func TestTwoNodesStoreOneInstance(t *testing.T) {
	pg := testpeer.StartPostgresT(t)
	url := pg.NewDatabaseT(t)
	ctx := t.Context()
	bucket := mem.New()
	var nodes [2]*Service
	var dbs [2]interface {
		RepairIndex
		Catalog
	}
	for i := range nodes {
		db, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		nodes[i] = New(Config{Store: bucket, Index: db, AETitle: fmt.Sprintf("NODE%d", i)})
		dbs[i] = db
	}
	const rounds = 12
	for round := range rounds {
		var wg sync.WaitGroup
		var results [2]*Result
		for i, node := range nodes {
			wg.Go(func() {
				d := patientInstance("1.2.1", "1.2.1.1", "1.2.1.1.1", "Doe^Jane", "P1", "CT", 2*round+i)
				res, err := node.Store(ctx, &StoreRequest{
					SOPClassUID: uid.CTImageStorage, SOPInstanceUID: "1.2.1.1.1", TransferSyntaxUID: uid.ExplicitVRLittleEndian,
					CallingAE: "CT1", Source: SourceDIMSE, Dataset: bytes.NewReader(d.b.Bytes()),
				})
				if err != nil {
					t.Errorf("round %d, node %d: %v", round, i, err)
				}
				results[i] = res
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		rec, err := dbs[round%2].Instance(ctx, "1.2.1.1.1")
		if err != nil {
			t.Fatal(err)
		}
		latest := results[0].Instance
		if later(results[1].Instance, latest) {
			latest = results[1].Instance
		}
		if rec.Key != latest.Key || rec.SHA256 != latest.SHA256 {
			t.Fatalf("round %d: the record names %s, the latest version stored is %s", round, rec.Key, latest.Key)
		}
		obj, err := bucket.Open(ctx, rec.Key)
		if err != nil {
			t.Fatalf("round %d: the object of the record: %v", round, err)
		}
		obj.Close()
	}
	var problems []Problem
	if _, err := Verify(ctx, bucket, dbs[0], func(p Problem) { problems = append(problems, p) }); err != nil || len(problems) != 0 {
		t.Errorf("Verify: %v, %v", problems, err)
	}
}
