package control

import "errors"

var (
	// ErrInvalid is wrapped by the error of a change whose value cannot be
	// applied (an unknown mode, a malformed conversation id...).
	ErrInvalid = errors.New("control: invalid value")
	// ErrConflict is returned when a change lost its compare-and-set to other
	// writers of the same key too many times in a row.
	ErrConflict = errors.New("control: too many concurrent changes")
	// ErrAudit is wrapped by the error of a change that was applied (the bucket
	// holds the new value, every worker sees it) but whose control_audit row
	// could not be inserted.
	ErrAudit = errors.New("control: change applied but not audited")
	// ErrStopped is returned for a change to a stopped conversation: stopping
	// is final.
	ErrStopped = errors.New("control: conversation is stopped")
	// ErrWatchClosed is returned by a watch whose subscription ended before its
	// context did (the NATS connection was closed).
	ErrWatchClosed = errors.New("control: watcher closed")
	// ErrNoDatabase is returned by what needs PostgreSQL from a Store opened
	// without a pool.
	ErrNoDatabase = errors.New("control: no database")
)

// ErrNotFound is returned for a conversation that the conversations table
// does not hold (checked by a Store with a database).
var ErrNotFound = errors.New("control: conversation not found")
