package core

import "errors"

// Errors callers can branch on with errors.Is. Over-limit errors are returned
// by Session.Set when the value alone breaks a limit, and by the commit when
// the merged session would; the middleware hands commit errors to
// Config.ErrorHandler. The status DefaultErrorHandler answers for each is
// in the README's table "Errors and status codes".
var (
	// ErrInvalidConfig wraps every error NewManager returns for a bad Config.
	ErrInvalidConfig = errors.New("tandem: invalid config")
	// ErrValueTooLarge: an encoded value exceeds Limits.MaxValueSize.
	ErrValueTooLarge = errors.New("tandem: session value too large")
	// ErrTooManyAttributes: the session would hold more than Limits.MaxAttributes keys.
	ErrTooManyAttributes = errors.New("tandem: too many session attributes")
	// ErrSessionTooLarge: keys plus values would exceed Limits.MaxSessionSize.
	ErrSessionTooLarge = errors.New("tandem: session too large")
	// ErrNodeFull: the node already holds Limits.MaxSessions sessions and
	// cannot create another.
	ErrNodeFull = errors.New("tandem: node holds the maximum number of sessions")
	// ErrInvalidKey: an attribute key is empty, too long, or reserved
	// (keys starting with a NUL byte belong to Tandem).
	ErrInvalidKey = errors.New("tandem: invalid attribute key")
	// ErrReplication: the change is committed on this node but the replicator
	// could not confirm a second copy.
	ErrReplication = errors.New("tandem: replication failed")
	// ErrSessionMoved: another node took the session over while this
	// request ran; its changes were not committed. A retry reaches the new
	// owner.
	ErrSessionMoved = errors.New("tandem: session moved to another node")
	// ErrUnavailable: the request's session exists, or may exist, on
	// another node that could not hand it over in time (it does not
	// answer but is not known dead, or a handover is in progress). The
	// request is refused rather than given a fresh session; the default
	// error handler answers 503 with Retry-After.
	ErrUnavailable = errors.New("tandem: session temporarily unavailable")
	// ErrDraining: the node is shutting down and creates no new session.
	ErrDraining = errors.New("tandem: node is draining")
	// ErrNoSession: FromContext found no session (the middleware is missing).
	ErrNoSession = errors.New("tandem: no session in context")
	// ErrTooManySessions: Session.SetUser refused to bind a user who
	// already holds Limits.MaxSessionsPerUser sessions (LimitReject). It
	// is returned to the handler, never by a commit.
	ErrTooManySessions = errors.New("tandem: user holds the maximum number of sessions")
	// ErrInvalidUser: a user name passed to SetUser, UserSessions or
	// InvalidateUser is empty or longer than MaxUserLen.
	ErrInvalidUser = errors.New("tandem: invalid user")
	// ErrIncomplete: a cluster-wide query (UserSessions, InvalidateUser)
	// did not hear from every node in time; the result holds what the
	// others answered. The error is an *IncompleteError.
	ErrIncomplete = errors.New("tandem: not every node answered")
	// ErrResponseAborted: the commit failed when the header was about to be
	// written; the error response went out instead and the handler's writes
	// are discarded.
	ErrResponseAborted = errors.New("tandem: response replaced by session error")
)
