package wire

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tandemsession/tandem/core"
)

// FuzzUsersMessages decodes users requests (first byte even) and replies
// (odd): whatever decodes re-encodes to the same message; whatever does
// not fails with ErrMalformed or ErrLimit.
func FuzzUsersMessages(f *testing.F) {
	now := time.Unix(0, 1_700_000_000_000_000_000)
	f.Add(append([]byte{0}, AppendUsers(nil, Users{Op: UsersList, User: "u42"})...))
	f.Add(append([]byte{0}, AppendUsers(nil, Users{Op: UsersEnd, User: "u", IDs: []string{"a", "b"}, Reason: "limit"})...))
	f.Add(append([]byte{1}, AppendUsersReply(nil, UsersReply{Ended: 2, Sessions: []core.SessionInfo{{ID: "s", Node: "n1", Created: now, Accessed: now, Backup: true}}})...))
	f.Add([]byte{0, 1, 0xff, 0xff, 0x03})
	f.Add([]byte{1, 0, 0xff, 0xff, 0x03})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		b := in[1:]
		if in[0]%2 == 0 {
			u, err := DecodeUsers(b)
			if err == nil {
				again, err := DecodeUsers(AppendUsers(nil, u))
				if err != nil || again.Op != u.Op || again.User != u.User || again.All != u.All || again.Reason != u.Reason || !slices.Equal(again.IDs, u.IDs) {
					t.Fatalf("users %+v re-decodes as %+v, %v", u, again, err)
				}
			} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrLimit) {
				t.Fatal(err)
			}
			return
		}
		r, err := DecodeUsersReply(b)
		if err == nil {
			again, err := DecodeUsersReply(AppendUsersReply(nil, r))
			if err != nil || again.Ended != r.Ended || len(again.Sessions) != len(r.Sessions) {
				t.Fatalf("users reply %+v re-decodes as %+v, %v", r, again, err)
			}
			for i := range r.Sessions {
				a, b := again.Sessions[i], r.Sessions[i]
				if a.ID != b.ID || a.Node != b.Node || !a.Created.Equal(b.Created) || !a.Accessed.Equal(b.Accessed) || a.Backup != b.Backup {
					t.Fatalf("session %d: %+v re-decodes as %+v", i, b, a)
				}
			}
		} else if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrLimit) {
			t.Fatal(err)
		}
	})
}

// A fetch reply with a backup copy travels as status 5 and decodes as
// FetchFound with Backup set; a renamed session's copy may name the asked
// ID as its previous one.
func TestFetchReplyBackupAndRenamed(t *testing.T) {
	c := &core.Change{ID: "new", PrevID: "old", Version: 2, Epoch: 1, Full: true}
	b := AppendFetchReply(nil, FetchReply{Status: FetchFound, Copy: c, Backup: true})
	if b[0] != 5 {
		t.Fatalf("status byte %d", b[0])
	}
	rep, err := DecodeFetchReply(b, "old", Limits{})
	if err != nil || rep.Status != FetchFound || !rep.Backup || rep.Copy.ID != "new" {
		t.Fatalf("%+v, %v", rep, err)
	}
	if _, err := DecodeFetchReply(b, "other", Limits{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a copy of another session: %v", err)
	}
}
