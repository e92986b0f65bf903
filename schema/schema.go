// Package schema holds the index's SQL migrations. Each file NNN_name.sql
// takes the index from version NNN-1 to NNN; the version an index is at is
// its PRAGMA user_version.
package schema

import "embed"

// FS holds the migrations, applied in name order.
//
//go:embed *.sql
var FS embed.FS
