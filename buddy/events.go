package buddy

import "github.com/tandemsession/tandem/core"

// expiredCopy is a backup copy dropped because its session expired.
type expiredCopy struct {
	id string
	bk *backup
}

// reportExpired reports to the manager's Events.OnExpired the expired
// copies whose owner is gone: a live owner reports the expiry itself (and
// its removal drops the copy here, usually before it expires).
func (n *Node) reportExpired(m *core.Manager, dropped []expiredCopy) {
	for _, d := range dropped {
		if n.view.answers(d.bk.owner()) {
			continue
		}
		m.BackupExpired(d.id, unixTime(d.bk.created), unixTime(d.bk.accessed), d.bk.change(d.id).Set)
	}
}
