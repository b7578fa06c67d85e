// Package memberlist runs a Tandem node's membership on
// hashicorp/memberlist (SWIM with Lifeguard): set a *Membership as
// buddy.Config.Membership, and the node takes who is in the cluster and
// alive from memberlist's gossip instead of probing its peers itself. The
// work per node stays flat as the cluster grows (memberlist probes one
// node per ProbeInterval and gossips to a few), where the static list's
// probes still reach every node never heard from or dead.
//
// It lives in its own module so that Tandem's root module keeps its
// dependencies.
//
// # Security
//
// memberlist's SECURITY.md warns that it is not secure by default: without
// a key its gossip is plain and unauthenticated, and anyone who can reach
// the gossip port can join, spread false deaths, or read the members'
// metadata. Tandem sets, whatever the preset:
//
//   - SecretKey: 32 bytes derived from the cluster key by HKDF-SHA256
//     (info "tandem memberlist gossip v1"), so AES-256-GCM encrypts and
//     authenticates every gossip packet and stream, and the cluster key
//     itself never reaches memberlist;
//   - GossipVerifyIncoming and GossipVerifyOutgoing: true, so a plain
//     packet is neither accepted nor sent;
//   - Label "tandem": every packet carries it and a packet with another
//     label is dropped (a second memberlist cluster on the same network
//     with the same key does not mix in);
//   - each node's metadata (NodeMeta) carries its replication address,
//     zone, incarnation and a fingerprint of the cluster key; a member
//     whose fingerprint differs is ignored.
//
// memberlist's gossip key is one key: rotating the cluster key means
// restarting the nodes on the new key (the replication itself accepts
// several keys, see buddy.Config.ClusterKeys). Gossip addresses are not
// authenticated beyond the key: keep the gossip port, like the replication
// port, on a private network.
package memberlist

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	ml "github.com/hashicorp/memberlist"

	"github.com/tandemsession/tandem/buddy"
)

// Preset selects memberlist's base configuration.
type Preset int

const (
	// LAN is memberlist.DefaultLANConfig: probes every second, a dead node
	// found within about 5 s. The default.
	LAN Preset = iota
	// WAN is memberlist.DefaultWANConfig: slower probes and longer
	// timeouts, for nodes across regions.
	WAN
	// Local is memberlist.DefaultLocalConfig: loopback or one host, fast
	// timers (tests, simulations).
	Local
)

// Config configures a Membership.
type Config struct {
	// Preset is LAN (default), WAN or Local.
	Preset Preset
	// BindAddr is the gossip address, host:port, for TCP and UDP; port 0
	// picks a free one. Required.
	BindAddr string
	// AdvertiseAddr is the gossip address the other members reach this one
	// at. Default: BindAddr's (the bound port when it was 0).
	AdvertiseAddr string
	// Join lists gossip addresses of members to join through (any of
	// them is enough; this node's own may be among them). Default none:
	// this node starts the cluster, and others join it.
	Join []string
	// ClusterKey is the cluster key (buddy.Config.ClusterKeys[0]), 32
	// bytes; the gossip key is derived from it. Required.
	ClusterKey []byte
	// Logger receives memberlist's log lines at their levels. Default:
	// discarded.
	Logger *slog.Logger
	// Tune, when set, edits memberlist's configuration after Tandem set
	// it (timers for a simulation, say). Default nil. Changing the
	// security settings it set is at the caller's risk.
	Tune func(*ml.Config)
}

// ErrInvalidConfig wraps every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("memberlist: invalid config")

// Membership implements buddy.Membership on hashicorp/memberlist.
type Membership struct {
	cfg  Config
	key  []byte // the gossip key
	fp   uint64 // the cluster key's fingerprint
	mu   sync.Mutex
	list *ml.Memberlist
	meta []byte
	gone map[string]buddy.Member // members that died or left, by ID
	note func()
}

// New validates cfg and returns a Membership; nothing runs until the node
// calls Join.
func New(cfg Config) (*Membership, error) {
	if len(cfg.ClusterKey) != 32 {
		return nil, fmt.Errorf("%w: ClusterKey: %d bytes, need 32", ErrInvalidConfig, len(cfg.ClusterKey))
	}
	if _, _, err := net.SplitHostPort(cfg.BindAddr); err != nil {
		return nil, fmt.Errorf("%w: BindAddr: %w", ErrInvalidConfig, err)
	}
	if cfg.Preset < LAN || cfg.Preset > Local {
		return nil, fmt.Errorf("%w: Preset %d", ErrInvalidConfig, cfg.Preset)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	key, err := GossipKey(cfg.ClusterKey)
	if err != nil {
		return nil, err
	}
	fpKey, err := hkdf.Key(sha256.New, cfg.ClusterKey, nil, "tandem memberlist fingerprint v1", 8)
	if err != nil {
		return nil, fmt.Errorf("memberlist: fingerprint: %w", err)
	}
	return &Membership{cfg: cfg, key: key, fp: binary.BigEndian.Uint64(fpKey), gone: map[string]buddy.Member{}}, nil
}

// GossipKey returns the memberlist key Tandem derives from a cluster key:
// HKDF-SHA256, info "tandem memberlist gossip v1", 32 bytes (AES-256).
func GossipKey(clusterKey []byte) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, clusterKey, nil, "tandem memberlist gossip v1", 32)
	if err != nil {
		return nil, fmt.Errorf("memberlist: gossip key: %w", err)
	}
	return k, nil
}

// config returns memberlist's configuration for node self.
func (m *Membership) config(self buddy.Member) (*ml.Config, error) {
	var c *ml.Config
	switch m.cfg.Preset {
	case WAN:
		c = ml.DefaultWANConfig()
	case Local:
		c = ml.DefaultLocalConfig()
	default:
		c = ml.DefaultLANConfig()
	}
	host, port, _ := net.SplitHostPort(m.cfg.BindAddr)
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("%w: BindAddr port %q", ErrInvalidConfig, port)
	}
	c.Name, c.BindAddr, c.BindPort, c.AdvertisePort = self.ID, host, p, p
	if m.cfg.AdvertiseAddr != "" {
		ah, ap, err := net.SplitHostPort(m.cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: AdvertiseAddr: %w", ErrInvalidConfig, err)
		}
		if c.AdvertisePort, err = strconv.Atoi(ap); err != nil {
			return nil, fmt.Errorf("%w: AdvertiseAddr port %q", ErrInvalidConfig, ap)
		}
		c.AdvertiseAddr = ah
	}
	c.SecretKey = m.key
	c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	c.Label = "tandem"
	c.Delegate = delegate{m}
	c.Events = events{m}
	c.Logger = log.New(&levelWriter{log: m.cfg.Logger}, "", 0)
	if m.cfg.Tune != nil {
		m.cfg.Tune(c)
	}
	return c, nil
}

// Join implements buddy.Membership: it starts memberlist as self and
// joins the members of Config.Join, retrying until one answers or ctx
// ends.
func (m *Membership) Join(ctx context.Context, self buddy.Member, changed func()) error {
	m.mu.Lock()
	if m.list != nil {
		m.mu.Unlock()
		return errors.New("memberlist: Join called twice")
	}
	m.meta = encodeMeta(meta{Addr: self.Addr, Zone: self.Zone, Incarnation: self.Incarnation, Fingerprint: m.fp})
	m.note = changed
	m.mu.Unlock()
	c, err := m.config(self)
	if err != nil {
		return err
	}
	list, err := ml.Create(c)
	if err != nil {
		return fmt.Errorf("memberlist: create: %w", err)
	}
	m.mu.Lock()
	m.list = list
	m.mu.Unlock()
	if len(m.cfg.Join) == 0 {
		return nil
	}
	for {
		_, err := list.Join(m.cfg.Join)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("memberlist: join %v: %w (%w)", m.cfg.Join, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Addr returns the gossip address this member is bound to ("" before
// Join): the address the next nodes join through.
func (m *Membership) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.list == nil {
		return ""
	}
	n := m.list.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Members implements buddy.Membership: the live members with their
// metadata, and those that died or left since.
func (m *Membership) Members() []buddy.Member {
	m.mu.Lock()
	list := m.list
	gone := make([]buddy.Member, 0, len(m.gone))
	for _, g := range m.gone {
		gone = append(gone, g)
	}
	m.mu.Unlock()
	if list == nil {
		return nil
	}
	var out []buddy.Member
	seen := map[string]bool{}
	for _, n := range list.Members() {
		mb, ok := m.member(n)
		if ok {
			out = append(out, mb)
			seen[mb.ID] = true
		}
	}
	for _, g := range gone {
		if !seen[g.ID] {
			out = append(out, g)
		}
	}
	return out
}

// member converts a memberlist node; false when its metadata does not
// decode or names another cluster key.
func (m *Membership) member(n *ml.Node) (buddy.Member, bool) {
	md, err := decodeMeta(n.Meta)
	if err != nil || md.Fingerprint != m.fp {
		m.cfg.Logger.Warn("memberlist: member ignored: its metadata does not match this cluster", "member", n.Name, "err", err)
		return buddy.Member{}, false
	}
	st := buddy.Alive
	switch n.State {
	case ml.StateSuspect:
		st = buddy.Suspect
	case ml.StateDead:
		st = buddy.Dead
	case ml.StateLeft:
		st = buddy.Left
	}
	return buddy.Member{Peer: buddy.Peer{ID: n.Name, Addr: md.Addr, Zone: md.Zone}, State: st, Incarnation: md.Incarnation}, true
}

// Leave implements buddy.Membership: it tells the members this one
// leaves, waiting at most until ctx ends (default 5 s).
func (m *Membership) Leave(ctx context.Context) error {
	m.mu.Lock()
	list := m.list
	m.mu.Unlock()
	if list == nil {
		return nil
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), 10*time.Millisecond)
	}
	if err := list.Leave(timeout); err != nil {
		return fmt.Errorf("memberlist: leave: %w", err)
	}
	return nil
}

// Close implements buddy.Membership: it stops memberlist without a leave
// (Leave announces one).
func (m *Membership) Close() error {
	m.mu.Lock()
	list := m.list
	m.list = nil
	m.mu.Unlock()
	if list == nil {
		return nil
	}
	if err := list.Shutdown(); err != nil {
		return fmt.Errorf("memberlist: shutdown: %w", err)
	}
	return nil
}

func (m *Membership) changed() {
	m.mu.Lock()
	note := m.note
	m.mu.Unlock()
	if note != nil {
		note()
	}
}

// delegate gives memberlist this node's metadata; Tandem sends no user
// messages over gossip.
type delegate struct{ m *Membership }

func (d delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	if len(d.m.meta) > limit {
		return nil
	}
	return d.m.meta
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// events feeds memberlist's join, leave and update events to the node.
type events struct{ m *Membership }

func (e events) NotifyJoin(n *ml.Node) {
	e.m.mu.Lock()
	delete(e.m.gone, n.Name)
	e.m.mu.Unlock()
	e.m.changed()
}

func (e events) NotifyLeave(n *ml.Node) {
	if mb, ok := e.m.member(n); ok {
		if mb.State != buddy.Left {
			mb.State = buddy.Dead
		}
		e.m.mu.Lock()
		e.m.gone[n.Name] = mb
		e.m.mu.Unlock()
	}
	e.m.changed()
}

func (e events) NotifyUpdate(*ml.Node) { e.m.changed() }

// meta is what a member's NodeMeta carries.
type meta struct {
	Addr, Zone  string
	Incarnation uint64
	Fingerprint uint64
}

const metaVersion = 1

// encodeMeta: version (1), address and zone (uvarint length and bytes
// each), incarnation (uvarint), fingerprint (8 bytes big-endian).
func encodeMeta(md meta) []byte {
	b := []byte{metaVersion}
	for _, s := range []string{md.Addr, md.Zone} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, md.Incarnation)
	return binary.BigEndian.AppendUint64(b, md.Fingerprint)
}

var errMeta = errors.New("memberlist: malformed member metadata")

func decodeMeta(b []byte) (meta, error) {
	var md meta
	if len(b) == 0 || b[0] != metaVersion {
		return md, errMeta
	}
	b = b[1:]
	for _, s := range []*string{&md.Addr, &md.Zone} {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || n > 255 {
			return md, errMeta
		}
		*s, b = string(b[k:k+int(n)]), b[k+int(n):]
	}
	inc, k := binary.Uvarint(b)
	if k <= 0 || len(b)-k != 8 {
		return md, errMeta
	}
	md.Incarnation, md.Fingerprint = inc, binary.BigEndian.Uint64(b[k:])
	if md.Addr == "" {
		return md, errMeta
	}
	return md, nil
}

// levelWriter turns memberlist's "[LEVEL] text" lines into slog records.
type levelWriter struct{ log *slog.Logger }

func (w *levelWriter) Write(p []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		line := sc.Text()
		level := slog.LevelInfo
		for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
			if rest, ok := bytes.CutPrefix([]byte(line), []byte(prefix)); ok {
				level, line = l, string(bytes.TrimSpace(rest))
			}
		}
		w.log.Log(context.Background(), level, line)
	}
	return len(p), nil
}

var (
	_ buddy.Membership = (*Membership)(nil)
	_ io.Writer        = (*levelWriter)(nil)
)
