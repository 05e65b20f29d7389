// Command bench measures pacsd side by side with dcmtk's storescp and with
// Orthanc, in one run on one machine, and prints a report. It is a
// benchmark, not a test: it prints figures with the targets next to them.
// It stops with an error only when a peer does not hold every instance it
// was sent, or answers a query or a retrieve otherwise than the corpus
// says it must, because such a run measured something else.
//
// C-STORE: the same synthetic CT series is sent by dcmtk's storescu, in
// one association, to each peer in turn; storescu's wall time gives
// instances/s. Orthanc runs twice, as testpeer configures it (no fsync)
// and with SyncStorageArea on, because pacsd answers only after an fsync
// and storescp never fsyncs. Peers are started fresh, in empty
// directories, for every run, and their order rotates from round to
// round, because a shared machine is noisy and whichever peer runs first
// or last would otherwise always get the same share of the noise. The
// report gives the median of the rounds, with minimum and maximum.
//
// Concurrent C-STORE: -conc series of -conc-instances instances, one
// per storescu association, all sent at once, into pacsd, dcmtk's
// storescp --fork (a process per association) and Orthanc with
// SyncStorageArea=true; beside them the same peers get one of those
// series on one association. The report gives instances/s over all
// associations, the peer's CPU per instance, the ratios the issue set
// targets for, and, from the times pacsd logs per instance, how much of
// an instance's time went to receiving it, making it durable, and
// committing its index record (see concurrency.go).
//
// pacsd also runs on S3, a MinIO server started for the run behind a proxy
// that adds -s3-latency to every request (S3 is across a network in
// production, and its latency is what makes the modes differ), in both
// acknowledgement modes: ack=direct (success after S3 confirms) and
// ack=spool (success after the local spool's fsync; a spooled run counts
// once its spool has drained, and the report gives how long that took).
// Beside them, as the yardstick of ack=direct, a loop of plain minio-go
// PutObject calls sends the files of the same series, one at a time,
// through the same proxy into a fresh bucket.
//
// Then a fresh pacsd stores one multi-frame instance of a gigabyte, and
// the report gives how far its resident set grew above what it was after
// storing one ordinary instance.
//
// C-FIND: a corpus of small instances (-find-instances, in studies of 50
// instances in two series, about two studies per patient, dates over one
// year) is loaded into one pacsd and one Orthanc by several storescu
// associations in parallel, and the report says how long each took. The
// same loaded peers serve the DICOMweb searches below, so this Orthanc
// loads the DICOMweb plugin unless -skip-web. Then
// a fixed mix of STUDY-level Study Root queries (by Patient ID, patient
// name prefix, a week of study dates, accession number, Study Instance
// UID, one day) with a study list's return keys, Modalities in Study and
// Number of Study Related Instances among them, is sent to both over one
// association each, by pacsd's own SCU, alternating between the peers
// query by query. Every answer is checked against the corpus; the report
// gives p50 and p99 of the query times per peer and per kind of query,
// and a C-ECHO round trip on the same associations as the floor.
//
// Reindex: once the searches below are done, pacsd is stopped and pacsd
// reindex rebuilds the index of everything it holds (the corpus and the
// DICOMweb series) from its filesystem store into a new SQLite file; the
// report gives instances/s.
//
// C-MOVE: the series of the C-STORE measurement, which is one study, is
// stored into a fresh pacsd and a fresh Orthanc, each configured with a
// fresh storescp as move destination, and moved to it with one C-MOVE at
// STUDY level by pacsd's own SCU; the C-MOVE's time, request to final
// response, gives instances/s, median over the rounds, peers rotating as
// above.
//
// DICOMweb, pacsd beside Orthanc's DICOMweb plugin (Debian's
// orthanc-dicomweb), every request from this program's Go HTTP client and
// timed to the last byte of the answer, every answer checked:
//
//   - STOW-RS: the series of the C-STORE measurement in one POST of a
//     multipart/related body with one part per instance, streamed from the
//     files, into fresh peers, rounds and rotation as above; instances/s.
//   - QIDO-RS: study searches (PatientName=A*, and StudyDate, PatientID
//     and no key with a limit) on the C-FIND corpus, sent to the same
//     loaded peers, alternating; p50 and p99 per kind (-web-reps).
//   - WADO-RS metadata of a series of -metadata-instances instances of
//     -size, stored into the same peers afterwards; p50 and p99
//     (-metadata-reps).
//   - WADO-RS retrieve of the series of the C-STORE measurement, stored
//     into the same peers, in MB/s beside reading the same objects' files
//     straight from pacsd's storage directory and beside a plain net/http
//     server of this program sending those files (-wado-reps).
//
// Security (security.go): the series of the C-STORE measurement over
// DICOM TLS beside plain TCP into fresh pacsd, rounds alternating; and
// one QIDO-RS search on a pacsd checking OIDC bearer tokens of Ory Hydra
// beside one without authentication, alternating.
//
// Corrected retrieve (corrected.go): WADO-RS of a series whose study was
// corrected, served with the correction written over each header on the
// way out, beside the same series uncorrected, in one pacsd, alternating
// (-wado-reps); MB/s and their ratio against issue 13's 0.8×
// (-skip-corrected).
//
// Usage:
//
//	go run ./internal/bench [-rounds 5] [-instances 300] [-size 512KiB]
//	    [-big-size 1GiB] [-find-instances 100000] [-find-reps 100]
//	    [-find-loaders 4] [-web-reps 100] [-metadata-instances 1000]
//	    [-metadata-reps 30] [-wado-reps 10] [-pacsd path] [-skip-orthanc]
//	    [-skip-store] [-skip-big] [-skip-find] [-skip-move] [-skip-web]
//	    [-skip-s3] [-s3-latency 10ms] [-conc 8] [-conc-instances 300]
//	    [-skip-conc] [-skip-codec] [-skip-security] [-only-ui]
//
// -only-ui measures the study list of the web interface alone (ui.go),
// with -find-instances studies, leaving every other measurement out.
// Without -pacsd, pacsd is built from this module into the temporary
// directory. Everything the run creates lives in one temporary directory,
// which is removed at the end, also on Ctrl-C.
package main
