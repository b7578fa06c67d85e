package wire

import (
	"encoding/binary"

	"github.com/tandemsession/tandem/core"
)

// UsersOp is what a MsgUsers asks.
type UsersOp byte

// Users ops.
const (
	// UsersList: list the user's sessions you own, and the backup copies
	// you hold of them whose owner is gone.
	UsersList UsersOp = 1
	// UsersEnd: end the user's sessions (those named, or all), and their
	// backup copies whose owner is gone.
	UsersEnd UsersOp = 2
)

// Bounds of the users messages: a request names at most MaxUsersIDs
// sessions (it fits the 4 KiB bodies of the small endpoints); a reply
// lists at most MaxUsersSessions.
const (
	MaxUsersIDs      = 64
	MaxUsersSessions = 4096
	maxReasonLen     = 32
)

// Users is the payload of MsgUsers.
type Users struct {
	Op   UsersOp
	User string
	// All (UsersEnd): end every session of the user; otherwise IDs.
	All bool
	IDs []string
	// Reason (UsersEnd) is reported to the hooks (core.Reason).
	Reason string
}

// AppendUsers appends the encoding of u: the op byte, the user and the
// reason (length-prefixed), a byte 1 for All (0 otherwise), the number of
// IDs (uvarint) and each ID (length-prefixed). IDs beyond MaxUsersIDs are
// the caller's to split.
func AppendUsers(dst []byte, u Users) []byte {
	dst = append(dst, byte(u.Op))
	dst = appendString(dst, u.User)
	dst = appendString(dst, u.Reason)
	all := byte(0)
	if u.All {
		all = 1
	}
	dst = append(dst, all)
	dst = binary.AppendUvarint(dst, uint64(len(u.IDs)))
	for _, id := range u.IDs {
		dst = appendString(dst, id)
	}
	return dst
}

// DecodeUsers decodes what AppendUsers encodes. Errors wrap ErrMalformed
// or ErrLimit.
func DecodeUsers(b []byte) (Users, error) {
	r := &reader{b: b, rec: -1, what: "users request", item: "ID"}
	var u Users
	op, err := r.byte("op")
	if err != nil {
		return u, err
	}
	if u.Op = UsersOp(op); u.Op != UsersList && u.Op != UsersEnd {
		return u, r.fail(ErrMalformed, "op %d", op)
	}
	user, err := r.bytes("user", core.MaxUserLen, "MaxUserLen")
	if err != nil {
		return u, err
	}
	if len(user) == 0 {
		return u, r.fail(ErrMalformed, "empty user")
	}
	reason, err := r.bytes("reason", maxReasonLen, "maxReasonLen")
	if err != nil {
		return u, err
	}
	u.User, u.Reason = string(user), string(reason)
	all, err := r.byte("all")
	if err != nil || all > 1 {
		return u, r.fail(ErrMalformed, "all flag")
	}
	u.All = all == 1
	n, err := r.count("ID count", 2, MaxUsersIDs, "MaxUsersIDs")
	if err != nil {
		return u, err
	}
	for i := range n {
		r.rec = i
		id, err := r.id("session ID")
		if err != nil {
			return u, err
		}
		u.IDs = append(u.IDs, id)
	}
	r.rec = -1
	return u, r.end()
}

// UsersReply is the payload of MsgUsersReply.
type UsersReply struct {
	// Ended counts the sessions ended (UsersEnd).
	Ended uint64
	// Sessions lists the sessions found (UsersList).
	Sessions []core.SessionInfo
}

// AppendUsersReply appends the encoding of r: Ended (uvarint), the number
// of sessions (uvarint, at most MaxUsersSessions: the rest is left out),
// and for each its ID and node (length-prefixed), created and accessed
// (varint Unix nanoseconds) and a flags byte (1: a backup copy).
func AppendUsersReply(dst []byte, r UsersReply) []byte {
	dst = binary.AppendUvarint(dst, r.Ended)
	ss := r.Sessions[:min(len(r.Sessions), MaxUsersSessions)]
	dst = binary.AppendUvarint(dst, uint64(len(ss)))
	for _, s := range ss {
		dst = appendString(dst, s.ID)
		dst = appendString(dst, s.Node)
		dst = binary.AppendVarint(dst, unixNano(s.Created))
		dst = binary.AppendVarint(dst, unixNano(s.Accessed))
		flags := byte(0)
		if s.Backup {
			flags = 1
		}
		dst = append(dst, flags)
	}
	return dst
}

// DecodeUsersReply decodes what AppendUsersReply encodes. Errors wrap
// ErrMalformed or ErrLimit.
func DecodeUsersReply(b []byte) (UsersReply, error) {
	r := &reader{b: b, rec: -1, what: "users reply", item: "session"}
	var rep UsersReply
	var err error
	if rep.Ended, err = r.uvarint("ended"); err != nil {
		return rep, err
	}
	n, err := r.count("session count", 6, MaxUsersSessions, "MaxUsersSessions")
	if err != nil {
		return rep, err
	}
	rep.Sessions = make([]core.SessionInfo, 0, n)
	for i := range n {
		r.rec = i
		var s core.SessionInfo
		if s.ID, err = r.id("session ID"); err != nil {
			return rep, err
		}
		node, err := r.bytes("node", MaxIDLen, "MaxIDLen")
		if err != nil {
			return rep, err
		}
		s.Node = string(node)
		created, err := r.varint("created")
		if err != nil {
			return rep, err
		}
		accessed, err := r.varint("accessed")
		if err != nil {
			return rep, err
		}
		s.Created, s.Accessed = fromUnixNano(created), fromUnixNano(accessed)
		flags, err := r.byte("flags")
		if err != nil {
			return rep, err
		}
		if flags > 1 {
			return rep, r.fail(ErrMalformed, "flags %d", flags)
		}
		s.Backup = flags == 1
		rep.Sessions = append(rep.Sessions, s)
	}
	r.rec = -1
	return rep, r.end()
}
