package compress

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"
)

// zstdDictMagic starts every dictionary in zstd's dictionary format; the
// little-endian dictionary ID follows it.
const zstdDictMagic = "\x37\xa4\x30\xec"

// dictionary is one loaded zstd dictionary and the coders that use it.
// It is immutable once built, apart from encoders created on first use.
type dictionary struct {
	id   uint32
	data []byte // zstd-format dictionary whose embedded ID is id
	dec  *zstd.Decoder
	encs [LevelBetter]lazyCodec
}

type lazyCodec struct {
	once  sync.Once
	codec *zstdCodec
	err   error
}

// newDictionary loads a zstd-format dictionary under id. The ID embedded
// in data is replaced by id, so frames carry the registry's ID.
func newDictionary(id uint32, data []byte) (*dictionary, error) {
	if id == 0 {
		return nil, fmt.Errorf("compress: dictionary ID 0 is reserved")
	}
	if len(data) < 8 || string(data[:4]) != zstdDictMagic {
		return nil, fmt.Errorf("compress: dictionary %d is not in zstd dictionary format", id)
	}
	data = bytes.Clone(data)
	binary.LittleEndian.PutUint32(data[4:8], id)
	dec, err := newZstdDecoder(zstd.WithDecoderDicts(data))
	if err != nil {
		return nil, fmt.Errorf("compress: loading dictionary %d: %w", id, err)
	}
	return &dictionary{id: id, data: data, dec: dec}, nil
}

// codec returns the dictionary's codec at level l, creating its encoder on
// first use.
func (d *dictionary) codec(l Level) (*zstdCodec, error) {
	lc := &d.encs[l-LevelFastest]
	lc.once.Do(func() {
		enc, err := newZstdEncoder(l, zstd.WithEncoderDict(d.data))
		if err != nil {
			lc.err = fmt.Errorf("compress: dictionary %d: %w", d.id, err)
			return
		}
		small, err := newZstdEncoder(l, zstd.WithEncoderDict(d.data), zstd.WithNoEntropyCompression(true))
		if err != nil {
			lc.err = fmt.Errorf("compress: dictionary %d: %w", d.id, err)
			return
		}
		lc.codec = &zstdCodec{id: IDZstdDict, name: NameZstdDict, dictID: d.id, enc: enc, dec: d.dec, small: small}
	})
	return lc.codec, lc.err
}

// NewZstdDict returns a zstd codec that encodes and decodes with the given
// zstd-format dictionary (as produced by TrainDictionary or
// "zstd --train"). The dictionary's embedded ID is replaced by id, which
// must not be 0. The codec's bare payloads carry id in their zstd frame
// header; Compressor frames carry it in the Tandem frame header as well.
func NewZstdDict(id uint32, dict []byte, level Level) (Codec, error) {
	if !level.valid() {
		return nil, fmt.Errorf("compress: invalid zstd level %d", int(level))
	}
	d, err := newDictionary(id, dict)
	if err != nil {
		return nil, err
	}
	return d.codec(level)
}

// Registry holds zstd dictionaries by ID and names the one new frames are
// encoded with. Several dictionaries can be loaded at once so that a new
// one can be rolled out while frames made with the old one still decode:
// Add the new dictionary on every node, then SetActive it, then Remove the
// old one once no frames made with it remain.
//
// A dictionary ID must mean the same bytes on every node: frames carry no
// checksum, so decoding with a different dictionary under the same ID
// yields wrong data or ErrCorrupt. Prefer small IDs (1–7 keep the frame
// header to one byte, below 256 keep the zstd header one byte shorter).
//
// The zero value is an empty registry. A Registry is safe for concurrent
// use; lookups on the encode and decode paths take no locks.
type Registry struct {
	mu    sync.Mutex // serialises writers
	state atomic.Pointer[registryState]
}

// registryState is an immutable snapshot; writers replace it whole.
type registryState struct {
	dicts  map[uint32]*dictionary
	active *dictionary
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) load() *registryState {
	if s := r.state.Load(); s != nil {
		return s
	}
	return &registryState{}
}

// lookup returns the dictionary with the given ID, or nil.
func (r *Registry) lookup(id uint32) *dictionary {
	return r.load().dicts[id]
}

// active returns the active dictionary, or nil.
func (r *Registry) active() *dictionary {
	return r.load().active
}

// Add loads a zstd-format dictionary (see TrainDictionary) under id, which
// must not be 0. The ID embedded in dict is ignored and replaced by id.
// The registry keeps its own copy of dict. Adding the same bytes again
// under the same ID is a no-op; adding different bytes under an ID that is
// already loaded is an error (Remove it first). Add does not change which
// dictionary is active.
func (r *Registry) Add(id uint32, dict []byte) error {
	d, err := newDictionary(id, dict)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.load()
	if have, ok := old.dicts[id]; ok {
		if bytes.Equal(have.data, d.data) {
			return nil
		}
		return fmt.Errorf("compress: dictionary %d already loaded with different content", id)
	}
	next := &registryState{dicts: make(map[uint32]*dictionary, len(old.dicts)+1), active: old.active}
	for k, v := range old.dicts {
		next.dicts[k] = v
	}
	next.dicts[id] = d
	r.state.Store(next)
	return nil
}

// SetActive makes the dictionary with the given ID the one Compressors
// encode with. The ID must have been added. SetActive(0) stops encoding
// with a dictionary; loaded dictionaries still decode.
func (r *Registry) SetActive(id uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.load()
	var d *dictionary
	if id != 0 {
		var ok bool
		if d, ok = old.dicts[id]; !ok {
			return fmt.Errorf("%w: cannot activate dictionary %d: not loaded", ErrUnknownDictionary, id)
		}
	}
	r.state.Store(&registryState{dicts: old.dicts, active: d})
	return nil
}

// Active returns the ID of the active dictionary, or 0 if none is active.
func (r *Registry) Active() uint32 {
	if d := r.active(); d != nil {
		return d.id
	}
	return 0
}

// Remove unloads the dictionary with the given ID; frames made with it no
// longer decode. Removing the active dictionary is an error: activate
// another one (or 0) first. Removing an unknown ID is a no-op.
func (r *Registry) Remove(id uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.load()
	if _, ok := old.dicts[id]; !ok {
		return nil
	}
	if old.active != nil && old.active.id == id {
		return fmt.Errorf("compress: cannot remove dictionary %d: it is active", id)
	}
	next := &registryState{dicts: make(map[uint32]*dictionary, len(old.dicts)), active: old.active}
	for k, v := range old.dicts {
		if k != id {
			next.dicts[k] = v
		}
	}
	r.state.Store(next)
	return nil
}

// IDs returns the IDs of the loaded dictionaries in increasing order.
func (r *Registry) IDs() []uint32 {
	s := r.load()
	ids := make([]uint32, 0, len(s.dicts))
	for id := range s.dicts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// TrainOptions tune TrainDictionary. The zero value is a good default for
// session deltas of a few hundred bytes.
type TrainOptions struct {
	// Size is the maximum dictionary size in bytes. Default (0): 16 KiB.
	// Larger dictionaries help only with diverse samples and make every
	// encode a little slower.
	Size int

	// Level is the zstd level the dictionary is tuned for; use the level
	// the dictionary will encode with. Default (0): LevelFastest.
	Level Level

	// HashBytes is the shortest repeated string the trainer looks for,
	// from 4 to 8. Default (0): 6.
	HashBytes int
}

// Defaults used by TrainDictionary for zero TrainOptions fields.
const (
	DefaultDictSize      = 16 << 10
	DefaultDictHashBytes = 6
)

// TrainDictionary builds a zstd-format dictionary from sample payloads
// with github.com/klauspost/compress/dict. Samples should be real payloads
// of the kind the dictionary will compress (a few hundred to a few
// thousand of them), without exact duplicates; only their first 64 KiB
// matter. The result is ready for Registry.Add or NewZstdDict and can be
// stored as-is. Training is not deterministic: keep the bytes of the
// dictionary you deploy rather than retraining on each node.
func TrainDictionary(samples [][]byte, opts TrainOptions) ([]byte, error) {
	if opts.Size == 0 {
		opts.Size = DefaultDictSize
	}
	if opts.Level == 0 {
		opts.Level = LevelFastest
	}
	if opts.HashBytes == 0 {
		opts.HashBytes = DefaultDictHashBytes
	}
	switch {
	case opts.Size < 256 || opts.Size > 1<<30:
		return nil, fmt.Errorf("compress: dictionary size %d out of range [256, 1 GiB]", opts.Size)
	case !opts.Level.valid():
		return nil, fmt.Errorf("compress: invalid zstd level %d", int(opts.Level))
	case opts.HashBytes < 4 || opts.HashBytes > 8:
		return nil, fmt.Errorf("compress: HashBytes %d out of range [4, 8]", opts.HashBytes)
	}
	var total int
	for _, s := range samples {
		total += len(s)
	}
	if len(samples) < 2 || total < 8*len(samples) {
		return nil, fmt.Errorf("compress: need at least 2 samples of 8 bytes or more to train a dictionary, have %d totalling %d bytes", len(samples), total)
	}
	out, err := dict.BuildZstdDict(samples, dict.Options{
		MaxDictSize: opts.Size,
		HashBytes:   opts.HashBytes,
		ZstdDictID:  1,
		ZstdLevel:   opts.Level.zstdLevel(),
	})
	if err != nil {
		return nil, fmt.Errorf("compress: training dictionary: %w", err)
	}
	// Reject anything zstd itself would not load.
	if _, err := zstd.InspectDictionary(out); err != nil {
		return nil, fmt.Errorf("compress: trained dictionary does not load: %w", err)
	}
	return out, nil
}
