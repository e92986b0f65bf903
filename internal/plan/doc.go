// Package plan holds the records that findsame writes and applysame reads
// and answers: the contract between the tools and with users' scripts,
// documented field by field in docs/plan-format.md.
//
// # Records
//
// A plan is a stream of JSON objects, one per line. Every record carries a
// "type" and the major format version "v" (Version). A dedupe record
// (Dedupe) asks to share Len bytes of every destination range with the
// source range; each range names a path, an offset and the identity
// (fsys.Identity: filesystem and subvolume, or dev in plans of version 1;
// ino, size, mtime) its file had when it was hashed, so that a stale plan
// is caught before the kernel is asked anything. applysame answers each plan
// line with a result record (Result) giving a status for the line and for
// every destination.
//
// # Reading
//
// Reader reads a plan line by line, so it can follow findsame through a
// pipe, and validates each record: a line that is not valid JSON, is not a
// dedupe record, has another major version, misses a field, has a field of
// the wrong JSON type or breaks an invariant (see Dedupe.Validate) comes
// back as a *LineError naming the line and the field, and reading goes on
// with the next line. Unknown fields are ignored, so minor additions to the
// format need no new version. Blank lines are skipped.
//
// # Writing
//
// Encoder writes result records, one line each with a single write, so that
// a consumer sees each result as soon as its line is done.
package plan
