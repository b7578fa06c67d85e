// Package wire holds every byte layout of Tandem's replication protocol,
// buddy/PROTOCOL.md: the sealed envelope and its replay window, batches of
// records and their replies, the cluster messages (ping, fetch, transfer,
// leave) and the frames of the batch stream. Package buddy speaks the
// protocol; this package only encodes and decodes, and never panics on
// what it decodes.
package wire

import (
	"errors"

	"github.com/tandemsession/tandem/core"
)

// Kind is the type of one record in a batch.
type Kind uint8

// Record kinds.
const (
	// KindDelta applies a delta on top of the version it names.
	KindDelta Kind = 1
	// KindFull replaces the backup copy with a full copy.
	KindFull Kind = 2
	// KindRemove drops the backup copy (invalidated or expired).
	KindRemove Kind = 3
	// KindTouch moves the backup copy's last access forward.
	KindTouch Kind = 4
	// KindMove tells the buddy that the owner hands the session, owned
	// under Change.Epoch, to node To: the copy becomes a fence for To under
	// the next epoch, unless the buddy handed it out already (then the
	// record is fenced, naming the node that took it).
	KindMove Kind = 5
)

// Record is one entry of a batch: a kind and the change it carries. For
// KindTouch only Change.ID, Epoch and Accessed are meaningful; for
// KindRemove only ID, Base, Version and Epoch; for KindMove only ID and
// Epoch, and To.
type Record struct {
	Kind   Kind
	Change *core.Change
	// To is the node a KindMove record hands the session to; empty for
	// every other kind.
	To string
}

// Limits bound what a decoder accepts.
type Limits struct {
	// MaxRecords per batch.
	MaxRecords int
	// MaxKey is the longest attribute key, in bytes.
	MaxKey int
	// MaxValue is the largest attribute value, in bytes.
	MaxValue int
	// MaxAttrs is the most attributes in one record.
	MaxAttrs int
}

// Wire errors callers branch on.
var (
	// ErrMalformed: the bytes are not a valid batch, ack or envelope.
	ErrMalformed = errors.New("buddy: malformed message")
	// ErrLimit: the message breaks a Limits bound.
	ErrLimit = errors.New("buddy: message exceeds a limit")
	// ErrAuth: the envelope does not open under any cluster key, or names
	// another recipient.
	ErrAuth = errors.New("buddy: message not authenticated")
	// ErrReplay: the envelope's sequence number was already seen.
	ErrReplay = errors.New("buddy: replayed message")
	// ErrUnknownNode: the sender is not a known peer.
	ErrUnknownNode = errors.New("buddy: unknown node")
	// ErrVersion: the message uses a protocol version this node does not speak.
	ErrVersion = errors.New("buddy: unsupported protocol version")
)
