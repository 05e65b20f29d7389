// Package retention decides which studies have outlived the retention
// rules of the archive's configuration, so that pacsd retention can list
// them and move them to the trash.
//
// A rule says which studies it covers (When: attributes matched as a
// query matches them, and the patient's age at the study) and how long
// they are kept: a period from a date of the study (Keep, From), or until
// the patient reaches an age (KeepUntilAge). A study is due when at least
// one rule covers it and every rule that covers it has run out: the
// longest retention wins. A study no rule covers never expires, and one
// whose dates cannot be read (no Study Date, no birth date for an age
// rule) is kept.
package retention
