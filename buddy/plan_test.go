package buddy

import (
	"slices"
	"testing"

	"github.com/tandemsession/tandem/core"
)

func TestFetchPlan(t *testing.T) {
	tests := []struct {
		name        string
		route       core.Route
		movedTo     string
		ownersBuddy string
		want        []candidate
	}{
		{"owner, then owner's buddy (newer than the cookie's backup), backup, local",
			core.Route{Owner: "n1", Backup: "n2"}, "", "n3",
			[]candidate{{"n1", SourceOwner}, {"n3", SourceOwnersBuddy}, {"n2", SourceBackup}, {"me", SourceLocal}}},
		{"the node it moved to comes first",
			core.Route{Owner: "n1", Backup: "n2"}, "n4", "n2",
			[]candidate{{"n4", SourceOwner}, {"n1", SourceOwner}, {"n2", SourceOwnersBuddy}, {"me", SourceLocal}}},
		{"this node is the owner's buddy: its copy in that place",
			core.Route{Owner: "n1", Backup: "me"}, "", "me",
			[]candidate{{"n1", SourceOwner}, {"me", SourceOwnersBuddy}}},
		{"this node was the owner (restarted, or gave it away)",
			core.Route{Owner: "me", Backup: "n2"}, "", "n2",
			[]candidate{{"n2", SourceOwnersBuddy}, {"me", SourceLocal}}},
		{"moved from here to here is nothing",
			core.Route{Owner: "n1"}, "me", "",
			[]candidate{{"n1", SourceOwner}, {"me", SourceLocal}}},
		{"unsaved: only its owner",
			core.Route{Owner: "n1", Backup: "n2", Unsaved: true}, "", "n3",
			[]candidate{{"n1", SourceOwner}}},
		{"no hints: only the local copy",
			core.Route{}, "", "",
			[]candidate{{"me", SourceLocal}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fetchPlan("me", tt.route, tt.movedTo, tt.ownersBuddy); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
